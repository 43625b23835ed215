"""Stripe-shaped API errors.

Every failure the emulator reports to an API client goes through :class:`StripeError`, so the
JSON body, the HTTP status and the headers look like what api.stripe.com answers and the real
``stripe`` library maps them onto the same exception classes (``InvalidRequestError``,
``AuthenticationError``, ``IdempotencyError``, ``RateLimitError``, ``CardError``, ...).
"""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An error answered to the client with Stripe's ``{"error": {...}}`` body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """Return the JSON body Stripe sends for this error."""
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOC_BASE + self.code.replace("_", "-")
        if self.param:
            error["param"] = self.param
        if request_id:
            error["request_log_url"] = (
                f"https://dashboard.stripe.com/test/logs/{request_id}?t=emulator"
            )
        error.update(self.extra)
        return {"error": error}


def resource_missing(kind: str, object_id: str, param: str | None = "id") -> StripeError:
    """404 for an id that does not exist, worded like Stripe (``No such customer: 'cus_1'``)."""
    return StripeError(
        f"No such {kind}: '{object_id}'",
        status=404,
        code="resource_missing",
        param=param,
    )


def unknown_parameter(param: str) -> StripeError:
    """400 for a parameter the endpoint does not accept."""
    return StripeError(
        f"Received unknown parameter: {param}",
        code="parameter_unknown",
        param=param,
    )


def missing_parameter(param: str) -> StripeError:
    """400 for a required parameter that was not sent."""
    return StripeError(
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
    )


def invalid_empty(param: str) -> StripeError:
    """400 for an empty string sent for a parameter that cannot be unset."""
    return StripeError(
        f"You passed an empty string for '{param}'. We assume empty values are an attempt to "
        f"unset a parameter; however '{param}' cannot be unset. You should remove '{param}' "
        "from your request or supply a non-empty value.",
        code="parameter_invalid_empty",
        param=param,
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    """404 for a path the API does not serve."""
    return StripeError(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
        "can help at https://support.stripe.com/.",
        status=404,
    )
