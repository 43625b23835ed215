"""The shared HTTP edge: one registry from domain errors to statuses and the error body."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from payments import errors
from payments.http import handle_http, make_resolver, route_exists, status_for
from tests.fakes.lambda_context import FakeLambdaContext
from tools.devserver.events import http_event

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequest(), 400),
        (errors.PayloadTooLarge(), 413),
        (errors.Unauthenticated(), 401),
        (errors.Forbidden(), 403),
        (errors.NotFound(), 404),
        (errors.Conflict(), 409),
        (errors.Unprocessable(), 422),
        (errors.UpstreamError(), 502),
        (errors.UpstreamUnavailable(), 503),
        (errors.PaymentsError(), 500),
    ],
)
def test_each_domain_error_has_one_status(error: errors.PaymentsError, status: int) -> None:
    assert status_for(error) == status


class Order(BaseModel):
    product: str


app = make_resolver()


@app.post("/v1/orders")
def create_order(order: Order) -> dict[str, str]:
    if order.product == "taken":
        raise errors.Conflict("You already own this.", code="already_purchased")
    return {"product": order.product}


def _post(body: bytes) -> dict:
    event = http_event(
        method="POST",
        path="/v1/orders",
        route_key="POST /v1/orders",
        body=body,
        headers=[("content-type", "application/json")],
    )
    return handle_http(app, event, FakeLambdaContext("test"))


def test_a_domain_error_becomes_the_contract_error_body(env: pytest.MonkeyPatch) -> None:
    response = _post(b'{"product": "taken"}')
    assert response["statusCode"] == 409
    assert json.loads(response["body"]) == {
        "error": {"code": "already_purchased", "message": "You already own this."}
    }


def test_a_body_that_is_not_json_is_a_400(env: pytest.MonkeyPatch) -> None:
    response = _post(b"{not json")
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("body", [b"[]", b'"product"', b"42"])
def test_a_body_that_is_not_an_object_says_so(env: pytest.MonkeyPatch, body: bytes) -> None:
    response = _post(body)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == {
        "code": "invalid_request",
        "message": "The request body must be a JSON object.",
    }


def test_a_missing_field_is_named_without_echoing_values(env: pytest.MonkeyPatch) -> None:
    response = _post(b'{"produkt": "sk_test_leaky"}')
    body = json.loads(response["body"])
    assert response["statusCode"] == 400
    assert "product" in body["error"]["message"]
    assert "sk_test_leaky" not in response["body"]


def test_route_table_classification() -> None:
    table = [("GET", "/v1/items/{id}"), ("POST", "/v1/items")]
    assert route_exists(table, "GET", "/v1/items/abc") == "ok"
    assert route_exists(table, "DELETE", "/v1/items/abc") == "method_not_allowed"
    assert route_exists(table, "GET", "/v1/items/abc/extra") == "not_found"
