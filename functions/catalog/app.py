"""Public catalog API: health, pricing, the OpenAPI document, and JSON 404/405 for the rest.

API Gateway sends every request that matches no route here (``$default``), so unknown routes
and wrong methods get the contract's error body instead of API Gateway's own.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict

import payments
from payments.catalog import load_catalog
from payments.http import (
    error_response,
    handle_http,
    json_response,
    make_resolver,
    ok_response,
    route_exists,
)
from payments.observability import logger
from payments.runtime import bootstrap
from payments.schema import Model

PRICING_CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=60"

app = make_resolver()


class Health(Model):
    status: str


class PricedProduct(Model):
    id: str
    name: str
    description: str
    amount: int
    currency: str
    display_price: str
    mode: str
    interval: str | None = None


class Pricing(Model):
    products: list[PricedProduct]


class OpenApiDocument(Model):
    """The OpenAPI 3.1 document; its parts are described by the OpenAPI specification."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


@app.get("/v1/health", summary="Liveness", responses=ok_response(Health, "The service is up"))
def health() -> Response[str]:
    return json_response(200, {"status": "ok"}, {"Cache-Control": "no-store"})


@app.get(
    "/v1/pricing",
    summary="The catalog, with the prices the website shows",
    responses=ok_response(Pricing, "The catalog"),
)
def pricing() -> Response[str]:
    return json_response(
        200, load_catalog().public_view(), {"Cache-Control": PRICING_CACHE_CONTROL}
    )


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    text = (Path(payments.__file__).parent / "openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@app.get(
    "/v1/openapi.json",
    summary="The OpenAPI document of every route",
    responses=ok_response(OpenApiDocument, "The OpenAPI document"),
)
def openapi() -> Response[str]:
    return json_response(200, openapi_document(), {"Cache-Control": "public, max-age=300"})


def _known_routes() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in openapi_document().get("paths", {}).items()
        for method in operations
    ]


@app.not_found
def unmatched_route(_: NotFoundError) -> Response[str]:
    event = app.current_event
    verdict = route_exists(_known_routes(), event.http_method, event.path)
    if verdict == "method_not_allowed":
        return error_response(
            405, "method_not_allowed", "This method is not allowed on this route."
        )
    return error_response(404, "not_found", "No such route.")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap()
    return handle_http(app, event, context)
