"""Domain errors.

Every failure the service reports to a caller is one of these. Each carries a stable
snake_case ``code`` and a message written for a person; the HTTP edge maps the class to a
status in one place (``payments.http``). Adapters translate vendor exceptions into these
with ``raise ... from exc`` so no vendor type leaks upward.
"""

from __future__ import annotations


class PaymentsError(Exception):
    """Base of every error the service reports on purpose."""

    code = "internal_error"
    default_message = "Something went wrong on our side. Please retry in a moment."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        if code is not None:
            self.code = code


class ConfigurationError(PaymentsError):
    """A required setting is missing or malformed: raised at cold start."""

    code = "configuration_error"


class InvalidRequest(PaymentsError):
    """The caller sent something we cannot act on."""

    code = "invalid_request"
    default_message = "The request is not valid."


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    default_message = "The request body is too large."


class Unauthenticated(PaymentsError):
    code = "unauthenticated"
    default_message = "Please sign in again."


class Forbidden(PaymentsError):
    code = "forbidden"
    default_message = "You are not allowed to do this."


class NotFound(PaymentsError):
    code = "not_found"
    default_message = "Not found."


class MethodNotAllowed(PaymentsError):
    code = "method_not_allowed"
    default_message = "This method is not allowed on this route."


class Conflict(PaymentsError):
    code = "conflict"
    default_message = "The request conflicts with the current state."


class Unprocessable(PaymentsError):
    code = "unprocessable"
    default_message = "The request is well-formed but cannot be processed."


class UpstreamError(PaymentsError):
    """A provider answered with something we did not expect (HTTP 502)."""

    code = "upstream_error"
    default_message = "A payment provider failed. Please retry in a moment."


class UpstreamUnavailable(PaymentsError):
    """A provider or our database is unreachable or throttling us (HTTP 503)."""

    code = "upstream_unavailable"
    default_message = "A payment provider is unavailable. Please retry in a moment."
