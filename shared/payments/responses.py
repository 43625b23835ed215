"""Status codes and bodies of the public contract, without the HTTP framework.

``payments.http`` builds on this for the API functions; the webhook function, which must
start fast, answers with it directly and never imports the resolver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from payments import errors

# The single registry from domain error to HTTP status (most specific class first).
STATUS_BY_ERROR: tuple[tuple[type[errors.PaymentsError], HTTPStatus], ...] = (
    (errors.PayloadTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (errors.InvalidRequest, HTTPStatus.BAD_REQUEST),
    (errors.Unauthenticated, HTTPStatus.UNAUTHORIZED),
    (errors.Forbidden, HTTPStatus.FORBIDDEN),
    (errors.NotFound, HTTPStatus.NOT_FOUND),
    (errors.MethodNotAllowed, HTTPStatus.METHOD_NOT_ALLOWED),
    (errors.Conflict, HTTPStatus.CONFLICT),
    (errors.Unprocessable, HTTPStatus.UNPROCESSABLE_ENTITY),
    (errors.UpstreamError, HTTPStatus.BAD_GATEWAY),
    (errors.UpstreamUnavailable, HTTPStatus.SERVICE_UNAVAILABLE),
)


def status_for(error: errors.PaymentsError) -> HTTPStatus:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


def lambda_result(
    status: int, body: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway (payload 2.0) result with a JSON body."""
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


def error_result(error: errors.PaymentsError) -> dict[str, Any]:
    return lambda_result(status_for(error), error_body(error.code, error.message))
