"""Generate the OpenAPI document of every route from the handlers themselves.

Each API function's Powertools resolver describes its own routes; this merges them into
``shared/payments/openapi.json`` (served by ``GET /v1/openapi.json``). ``--check`` fails when
the committed file is stale, which ``make test`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from tools.devserver.routes import ROOT, http_routes

OUTPUT = ROOT / "shared" / "payments" / "openapi.json"
TITLE = "Payments API"
VERSION = "1.0.0"


def _use_contract_validation_error(operation: dict[str, Any]) -> None:
    """Powertools documents validation failures as 422 HTTPValidationError; the service
    answers them with 400 and the contract's error body (``payments.http``)."""
    responses = operation.get("responses", {})
    generated = responses.get("422", {}).get("content", {}).get("application/json", {})
    replaced = generated.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError")
    if replaced:
        responses.pop("422")
    # Any operation that takes input can fail its validation, including those whose own 422
    # (a business refusal) kept Powertools from adding its validation response.
    takes_input = operation.get("parameters") or operation.get("requestBody")
    if (replaced or takes_input) and "400" not in responses:
        responses["400"] = {
            "description": "Bad Request",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }


def build_document() -> dict[str, Any]:
    modules = sorted({route.module for route in http_routes()})
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for module in modules:
        handler = importlib.import_module(module)
        # A function without a resolver describes its routes in an ``openapi`` module beside it.
        app = (
            getattr(handler, "app", None)
            or importlib.import_module(module.rsplit(".", 1)[0] + ".openapi").app
        )
        schema = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION))
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                _use_contract_validation_error(operation)
            paths.setdefault(path, {}).update(operations)
        schemas.update(schema.get("components", {}).get("schemas", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Stripe checkout, webhooks, refunds, subscriptions and member data.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "memberstack": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Memberstack member token.",
                }
            },
        },
    }
    return document


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run `python -m tools.openapi`")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
