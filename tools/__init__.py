"""Development, operations and benchmark tools; never packaged into a Lambda.

They run from the repository root (``.venv/bin/python -m tools.<name>``) and use the shared
layer's package the way a function does on Lambda, where the layer sits on ``sys.path``.
"""

import sys
from pathlib import Path

_LAYER = str(Path(__file__).resolve().parent.parent / "shared")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)
