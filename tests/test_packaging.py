"""What `sam build` packages and what the repository publishes stay consistent."""

from __future__ import annotations

import ast
import json
import re

import pytest

from tools import openapi
from tools.devserver.routes import ROOT, function_names, http_routes

pytestmark = pytest.mark.unit


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


LEFT_OUT_OF_THE_LAYER = {
    "boto3",
    "s3transfer",  # provided by the Lambda runtime; SQS goes through botocore
    "supabase",
    "supabase-auth",
    "supabase-functions",
    "realtime",
    "storage3",  # postgrest only
    "websockets",
    "cryptography",
    "cffi",
    "pycparser",  # only those clients need them
}
IMPORT_NAMES = {"supabase-auth": "supabase_auth", "supabase-functions": "supabase_functions"}


def test_the_layer_pins_exactly_the_runtime_requirements_minus_what_is_never_imported() -> None:
    runtime = _pins("requirements.txt")
    layer = _pins("shared/requirements.txt")
    assert layer == {k: v for k, v in runtime.items() if k not in LEFT_OUT_OF_THE_LAYER}


def test_no_deployed_module_imports_a_package_left_out_of_the_layer() -> None:
    left_out = {IMPORT_NAMES.get(name, name) for name in LEFT_OUT_OF_THE_LAYER}
    offenders = []
    for path in [
        *ROOT.joinpath("shared", "payments").rglob("*.py"),
        *ROOT.joinpath("functions").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in left_out]
    assert offenders == []


def test_every_function_has_a_sample_event_and_a_handler_module() -> None:
    for name, resource in function_names().items():
        code_uri = resource["Properties"]["CodeUri"].strip("/")
        folder = code_uri.split("/")[-1]
        assert (ROOT / code_uri / "app.py").is_file(), name
        assert (ROOT / "events" / f"{folder}.json").is_file(), f"events/{folder}.json missing"


def test_routes_come_from_the_template_with_default_last() -> None:
    routes = http_routes()
    keys = [r.route_key for r in routes]
    assert "GET /v1/pricing" in keys
    assert keys[-1] == "$default"


def test_the_committed_openapi_document_matches_the_handlers() -> None:
    committed = json.loads(openapi.OUTPUT.read_text())
    assert committed == openapi.build_document(), "run: python -m tools.openapi"
