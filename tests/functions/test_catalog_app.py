"""The catalog function through its Lambda entry point with API Gateway v2 events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.catalog import app as catalog_app
from tests.conftest import event_file
from tests.fakes.lambda_context import FakeLambdaContext
from tools.devserver.events import http_event

pytestmark = pytest.mark.unit


def invoke(
    method: str,
    path: str,
    *,
    route_key: str | None = None,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    event = http_event(
        method=method,
        path=path,
        route_key=route_key or f"{method} {path}",
        body=body,
        headers=headers or [],
    )
    return catalog_app.lambda_handler(event, FakeLambdaContext("CatalogFunction"))


def test_the_sample_event_returns_the_catalog(env: pytest.MonkeyPatch) -> None:
    env.setenv("ALLOWED_ORIGINS", "https://www.example.com")
    event = json.loads(event_file("catalog").read_text())
    response = catalog_app.lambda_handler(event, FakeLambdaContext("CatalogFunction"))
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert {p["id"] for p in body["products"]} >= {"business_plan_builder", "growth_monthly"}
    assert response["headers"]["Cache-Control"].startswith("public, max-age=")
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://www.example.com"


def test_health_says_ok(env: pytest.MonkeyPatch) -> None:
    response = invoke("GET", "/v1/health")
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "ok"})


def test_unknown_route_is_a_json_404(env: pytest.MonkeyPatch) -> None:
    response = invoke("GET", "/v1/nope", route_key="$default")
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"


def test_wrong_method_on_a_known_route_is_a_json_405(env: pytest.MonkeyPatch) -> None:
    response = invoke("DELETE", "/v1/pricing", route_key="$default")
    assert response["statusCode"] == 405
    assert json.loads(response["body"]) == {
        "error": {
            "code": "method_not_allowed",
            "message": "This method is not allowed on this route.",
        }
    }


def test_a_foreign_origin_gets_no_cors_headers(env: pytest.MonkeyPatch) -> None:
    env.setenv("ALLOWED_ORIGINS", "https://www.example.com")
    response = invoke("GET", "/v1/pricing", headers=[("Origin", "https://evil.example")])
    assert response["statusCode"] == 200
    assert "Access-Control-Allow-Origin" not in response.get("headers", {})


def test_preflight_from_an_allowed_origin_is_answered(env: pytest.MonkeyPatch) -> None:
    env.setenv("ALLOWED_ORIGINS", "https://www.example.com")
    response = invoke(
        "OPTIONS",
        "/v1/checkout/sessions",
        route_key="$default",
        headers=[("Origin", "https://www.example.com")],
    )
    assert response["statusCode"] == 204
    assert "Idempotency-Key" in response["headers"]["Access-Control-Allow-Headers"]


def test_an_oversized_body_is_refused_before_routing(env: pytest.MonkeyPatch) -> None:
    response = invoke(
        "GET", "/v1/health", body=b"x" * (17 * 1024), headers=[("Content-Type", "application/json")]
    )
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"]["code"] == "payload_too_large"


def test_an_unexpected_error_is_a_generic_500(env: pytest.MonkeyPatch) -> None:
    def explode() -> None:
        raise RuntimeError("db password is hunter2")

    env.setattr(catalog_app, "load_catalog", explode)
    response = invoke("GET", "/v1/pricing")
    assert response["statusCode"] == 500
    body = json.loads(response["body"])
    assert body["error"]["code"] == "internal_error"
    assert "hunter2" not in response["body"]


def test_the_published_openapi_document_lists_the_catalog_routes(env: pytest.MonkeyPatch) -> None:
    response = invoke("GET", "/v1/openapi.json")
    document = json.loads(response["body"])
    assert document["openapi"].startswith("3.")
    assert {"/v1/health", "/v1/pricing", "/v1/openapi.json"} <= set(document["paths"])
