"""What `sam build` packages and what the repository publishes stay consistent."""

from __future__ import annotations

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


def test_the_layer_pins_exactly_the_runtime_requirements_minus_the_lambda_runtime_sdk() -> None:
    runtime = _pins("requirements.txt")
    layer = _pins("shared/requirements.txt")
    assert layer == {k: v for k, v in runtime.items() if k not in ("boto3", "s3transfer")}


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
