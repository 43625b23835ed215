"""The environment read without pydantic, for the function that must start fastest.

Every other function validates ``payments.settings.Settings`` (a pydantic model) once per
container. The webhook reads four variables, and pydantic was a third of its cold start, so
it reads them here with the same rules: a blank value is unset, and a missing required
variable is a ``ConfigurationError`` naming every one that is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from payments.errors import ConfigurationError


def env_text(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``name``'s value stripped, or None when unset or blank (CloudFormation passes "")."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def require_env(*names: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of ``names``, or one ``ConfigurationError`` listing all that are missing."""
    values = {name: env_text(name, environ) for name in names}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ConfigurationError("missing required environment variable(s): " + ", ".join(missing))
    return {name: value for name, value in values.items() if value is not None}
