"""The HTTP edge shared by every API function.

One place maps domain errors to statuses and to the error body of the public contract:
``{"error": {"code": "<snake_case>", "message": "<for a person>"}}``. Unexpected exceptions
become a generic 500; their details go to the log and Sentry only.

``handle_http`` wraps ``app.resolve`` with what must hold for every response, including 404s
and preflights that never reach a route: the body size limit and CORS for the configured
origins (read from settings at request time, not at import time).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from payments import errors
from payments.observability import capture_exception, logger
from payments.responses import error_body, status_for
from payments.schema import Model
from payments.settings import get_settings

MAX_BODY_BYTES = 16 * 1024
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key")


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message),
        headers=dict(headers or {}),
    )


def json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=dict(headers or {}),
    )


class ErrorDetail(Model):
    code: str
    message: str


class ErrorBody(Model):
    """The body of every error response."""

    error: ErrorDetail


def ok_response(
    model: type[BaseModel], description: str, status: int = 200, *errors_documented: int
) -> dict[int, OpenAPIResponse]:
    """OpenAPI ``responses`` for a route: its success model plus the error body."""
    responses: dict[int, OpenAPIResponse] = {
        status: {"description": description, "content": {"application/json": {"model": model}}}
    }
    for error_status in (*errors_documented, 500):
        responses[error_status] = {
            "description": HTTPStatus(error_status).phrase,
            "content": {"application/json": {"model": ErrorBody}},
        }
    return responses


def _describe_validation(exc: RequestValidationError) -> str:
    # Name the fields, never echo the values: they may hold whatever a caller pasted.
    problems = []
    for err in exc.errors():
        location = [str(part) for part in err.get("loc", ()) if part not in ("body", "query")]
        where = ".".join(location) or "body"
        if err.get("type") == "json_invalid":
            return "The request body is not valid JSON."
        if where == "body" and err.get("type") in ("model_attributes_type", "dict_type"):
            return "The request body must be a JSON object."
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems[:5])


def require_known_query(params: Mapping[str, str] | None, *known: str) -> None:
    """Refuse a query parameter the route does not read: a misspelled filter (``member_id``
    for ``member``) must not silently widen a search to everyone's records."""
    unknown = sorted(set(params or {}) - set(known))
    if unknown:
        raise errors.InvalidRequest(
            f"Unknown query parameter(s): {', '.join(unknown)[:200]}. "
            f"This route reads: {', '.join(known)}.",
            code="unknown_parameter",
        )


def make_resolver() -> APIGatewayHttpResolver:
    """A resolver with request validation and the shared error mapping registered."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(errors.PaymentsError)
    def _domain_error(exc: errors.PaymentsError) -> Response[str]:
        status = status_for(exc)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            logger.warning("request failed upstream", extra={"code": exc.code})
        return error_response(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    def _validation_error(exc: RequestValidationError) -> Response[str]:
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_request", _describe_validation(exc))

    @app.exception_handler(RecursionError)
    def _too_deep(_: RecursionError) -> Response[str]:
        # json.loads gives up on deeply nested input (a few thousand brackets fit in 16 KiB)
        # with RecursionError, not ValueError: the caller's mistake, not a 500.
        return error_response(
            HTTPStatus.BAD_REQUEST, "invalid_request", "The request body is nested too deeply."
        )

    @app.not_found
    def _not_found(_: NotFoundError) -> Response[str]:
        event = app.current_event
        if _path_has_other_method(app, event.path, event.http_method):
            return error_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This method is not allowed on this route.",
            )
        return error_response(HTTPStatus.NOT_FOUND, "not_found", "No such route.")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        capture_exception(exc)
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "internal_error",
            errors.PaymentsError.default_message,
        )

    return app


def _path_has_other_method(app: APIGatewayHttpResolver, path: str, method: str) -> bool:
    routes = app._static_routes + app._dynamic_routes
    return any(route.method != method and route.rule.match(path) for route in routes)


def route_exists(paths: Iterable[tuple[str, str]], method: str, path: str) -> str:
    """Classify ``method path`` against ``(METHOD, /path/{param})`` pairs: ok, 405 or 404."""
    known = False
    for route_method, template in paths:
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            known = True
            if route_method.upper() == method.upper():
                return "ok"
    return "method_not_allowed" if known else "not_found"


def _header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    value = headers.get(name) or headers.get(name.lower())
    return value if isinstance(value, str) else None


def _cors_headers(origin: str | None) -> dict[str, str]:
    allowed = get_settings().allowed_origins
    if not origin or origin not in allowed:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Headers": ",".join(ALLOWED_HEADERS),
        "Access-Control-Allow-Methods": "GET,POST,DELETE,OPTIONS",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def handle_http(
    app: APIGatewayHttpResolver,
    event: dict[str, Any],
    context: LambdaContext,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> dict[str, Any]:
    """Resolve an API Gateway v2 event with size limits and CORS applied to every answer."""
    cors = _cors_headers(_header(event, "origin"))
    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    if method == "OPTIONS":
        return {"statusCode": HTTPStatus.NO_CONTENT, "headers": cors, "body": ""}

    body = event.get("body") or ""
    # A base64 body is 4/3 of the bytes it carries; compare the decoded size.
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
    if size > max_body_bytes:
        result = error_response(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            errors.PayloadTooLarge.code,
            errors.PayloadTooLarge.default_message,
        )
        response: dict[str, Any] = {
            "statusCode": result.status_code,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": result.body,
            "isBase64Encoded": False,
        }
    else:
        response = app.resolve(event, context)
    if cors:
        response.setdefault("headers", {}).update(cors)
    return response
