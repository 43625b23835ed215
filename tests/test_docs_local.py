"""docs/local.md lists a ``sam local invoke`` line for every function of template.yaml."""

from __future__ import annotations

import pytest

from tools.devserver.routes import ROOT, function_names

pytestmark = pytest.mark.unit


def test_every_function_has_its_sam_local_invoke_line_with_an_existing_event() -> None:
    text = (ROOT / "docs" / "local.md").read_text(encoding="utf-8")
    for name, resource in function_names().items():
        folder = resource["Properties"]["CodeUri"].strip("/").split("/")[-1]
        event = f"events/{folder}.json"
        assert (ROOT / event).is_file(), f"{event} is missing"
        line = next((ln for ln in text.splitlines() if f"sam local invoke {name} " in ln), "")
        assert f"-e {event}" in line, f"docs/local.md: add `sam local invoke {name} -e {event}`"
