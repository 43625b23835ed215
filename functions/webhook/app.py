"""Stripe webhook receiver: ``POST /v1/webhooks/stripe``.

Verifies the signature on the raw body, puts the event on SQS for the worker and answers 200 at
once. No database and no Stripe API call on this path: it must answer fast, and a slow
dependency here would make Stripe retry (and eventually disable the endpoint). A queue write
that fails answers 500 so that Stripe retries the delivery.

This is the one function that does not use the Powertools resolver: it serves a single route
whose body is checked by its signature, not a schema, and the resolver and its OpenAPI
machinery were most of its cold start (``make bench``). The route's OpenAPI description lives
in ``openapi.py`` beside this file. For the same reason it imports nothing its one route does
not use: no settings model (pydantic; ``payments.environment`` reads its four variables), no
botocore (``payments.adapters.queue`` signs one ``SendMessage`` with the standard library), no
catalog (``payments.stripe_envelope`` checks the event's envelope).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from payments import errors
from payments.adapters.queue import get_event_queue
from payments.deadline import start_invocation
from payments.environment import env_text, require_env
from payments.observability import capture_exception, get_metrics, logger, start_sentry
from payments.responses import error_body, error_result, lambda_result
from payments.stripe_envelope import check_envelope
from payments.webhook_signature import InvalidSignature, verify_signature

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

REQUIRED = ("STRIPE_WEBHOOK_SECRET", "WEBHOOK_QUEUE_URL")
ROUTE = ("POST", "/v1/webhooks/stripe")
SIGNATURE_HEADER = "stripe-signature"
# An SQS message holds 256 KiB; keep room for the message attributes.
MAX_EVENT_BYTES = 250 * 1024


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name and isinstance(value, str):
            return value.strip()
    return ""


def _raw_body(event: dict[str, Any]) -> str:
    """The body exactly as Stripe signed it."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(body)
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.InvalidRequest(
            "The body is not valid UTF-8 JSON.", code="invalid_payload"
        ) from None


@dataclass(frozen=True)
class WebhookConfig:
    """What this function reads from its environment (re-read per invocation: microseconds)."""

    signing_secrets: tuple[str, ...] = field(repr=False)
    queue_url: str
    endpoint_url: str | None = None

    @classmethod
    def from_environment(cls) -> WebhookConfig:
        current = _secret("STRIPE_WEBHOOK_SECRET")
        required = require_env(
            "WEBHOOK_QUEUE_URL", *(() if current else ("STRIPE_WEBHOOK_SECRET",))
        )
        secrets = [current or required["STRIPE_WEBHOOK_SECRET"]]
        # A second accepted signing secret while a rotated endpoint secret rolls out.
        previous = _secret("STRIPE_WEBHOOK_SECRET_PREVIOUS")
        if previous is not None:
            secrets.append(previous)
        return cls(
            signing_secrets=tuple(secrets),
            queue_url=required["WEBHOOK_QUEUE_URL"],
            endpoint_url=env_text("AWS_ENDPOINT_URL"),
        )


def _secret(name: str) -> str | None:
    """``name`` from the environment (local runs, tests), else read from where
    ``<name>_ARN`` says it is kept (a deployment), with the standard-library client."""
    value = env_text(name)
    if value is not None:
        return value
    reference = env_text(name + "_ARN")
    if reference is None:
        return None
    from payments.adapters.aws_secrets import webhook_secrets

    return webhook_secrets.get(reference, name)


def receive_stripe_event(event: dict[str, Any], config: WebhookConfig) -> dict[str, Any]:
    """Verify, queue, acknowledge. Raises a domain error for anything else."""
    http = event.get("requestContext", {}).get("http", {})
    if http.get("method", "POST") != ROUTE[0]:
        raise errors.MethodNotAllowed()
    signature = _header(event, SIGNATURE_HEADER)
    payload = _raw_body(event)
    if len(payload.encode()) > MAX_EVENT_BYTES:
        raise errors.PayloadTooLarge()
    try:
        verify_signature(payload, signature, config.signing_secrets)
    except InvalidSignature:
        # Who tried, never what they sent: the header and body stay out of the logs.
        logger.warning("stripe signature rejected", extra={"source_ip": http.get("sourceIp")})
        raise
    stripe_event = check_envelope(payload)
    queue = get_event_queue(config.queue_url, config.endpoint_url)
    queue.send_event(payload, event_id=stripe_event.id, event_type=stripe_event.type)
    logger.info(
        "stripe event queued",
        extra={"stripe_event_id": stripe_event.id, "stripe_event_type": stripe_event.type},
    )
    return lambda_result(HTTPStatus.OK, '{"received":true}')


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Unsigned requests are refused before any work, configuration included.
    if not _header(event, SIGNATURE_HEADER):
        return lambda_result(
            HTTPStatus.BAD_REQUEST,
            error_body("missing_signature", "The Stripe-Signature header is missing."),
        )
    try:
        if env_text("STRIPE_WEBHOOK_SECRET") is None:
            from payments.adapters.aws_secrets import webhook_secrets

            # A rotated secret reaches warm containers within minutes (no-op until then).
            webhook_secrets.refresh()
        config = WebhookConfig.from_environment()
        start_sentry(env_text("SENTRY_DSN"), env_text("SENTRY_ENVIRONMENT") or "dev")
        start_invocation(context)
        response = receive_stripe_event(event, config)
    except errors.PaymentsError as exc:
        response = error_result(exc)
    except Exception as exc:  # noqa: BLE001 - the contract's generic 500; details to the log
        logger.exception("webhook failed")
        capture_exception(exc)
        response = error_result(errors.PaymentsError())
    if response["statusCode"] >= HTTPStatus.INTERNAL_SERVER_ERROR:
        # Stripe retries a 5xx, but days of them disable the endpoint: count them for an alarm.
        from aws_lambda_powertools.metrics import MetricUnit

        metrics = get_metrics()
        metrics.add_metric(name="WebhookServerErrors", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
    return response
