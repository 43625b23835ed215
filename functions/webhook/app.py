"""Stripe webhook receiver: ``POST /v1/webhooks/stripe``.

Verifies the signature on the raw body, puts the event on SQS for the worker and answers 200 at
once. No database and no Stripe API call on this path: it must answer fast, and a slow
dependency here would make Stripe retry (and eventually disable the endpoint). A queue write
that fails answers 500 so that Stripe retries the delivery.
"""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from payments.adapters.queue import get_event_queue
from payments.deadline import start_invocation
from payments.errors import InvalidRequest
from payments.http import handle_http, json_response, make_resolver, ok_response
from payments.observability import get_metrics, logger
from payments.runtime import bootstrap
from payments.settings import Settings, get_settings
from payments.webhook_signature import InvalidSignature, verify_signature
from payments.webhooks import parse_event

REQUIRED = ("stripe_webhook_secret", "webhook_queue_url")
SIGNATURE_HEADER = "stripe-signature"
# An SQS message holds 256 KiB; keep room for the message attributes.
MAX_EVENT_BYTES = 250 * 1024

app = make_resolver()


class Received(BaseModel):
    received: bool


def _raw_body(event: dict[str, Any]) -> str:
    """The body exactly as Stripe signed it."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(body)
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("The body is not valid UTF-8 JSON.", code="invalid_payload") from None


def _signing_secrets(settings: Settings) -> list[str]:
    secrets = [settings.value("stripe_webhook_secret")]
    previous = settings.stripe_webhook_secret_previous
    # The template passes "" when no rotation is under way.
    if previous is not None and previous.get_secret_value().strip():
        secrets.append(previous.get_secret_value())
    return secrets


@app.post(
    "/v1/webhooks/stripe",
    summary="Receive a Stripe event (signed); queue it for processing",
    responses=ok_response(Received, "The event is queued", 200, 400),
)
def receive_stripe_event(
    stripe_signature: Annotated[
        str, Header(description="Stripe's t=...,v1=... signature of the raw body")
    ],
) -> Response[str]:
    settings = get_settings()
    payload = _raw_body(app.current_event.raw_event)
    try:
        verify_signature(payload, stripe_signature, _signing_secrets(settings))
    except InvalidSignature:
        # Who tried, never what they sent: the header and body stay out of the logs.
        source_ip = app.current_event.request_context.http.source_ip
        logger.warning("stripe signature rejected", extra={"source_ip": source_ip})
        raise
    stripe_event = parse_event(payload)
    queue = get_event_queue(settings.value("webhook_queue_url"), settings.aws_endpoint_url)
    queue.send_event(payload, event_id=stripe_event.id, event_type=stripe_event.type)
    logger.info(
        "stripe event queued",
        extra={"stripe_event_id": stripe_event.id, "stripe_event_type": stripe_event.type},
    )
    return json_response(HTTPStatus.OK, {"received": True})


def _has_signature(event: dict[str, Any]) -> bool:
    headers = event.get("headers") or {}
    return any(
        name.lower() == SIGNATURE_HEADER and isinstance(value, str) and value.strip()
        for name, value in headers.items()
    )


def _missing_signature() -> dict[str, Any]:
    error = InvalidSignature("The Stripe-Signature header is missing.", code="missing_signature")
    return {
        "statusCode": HTTPStatus.BAD_REQUEST,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": {"code": error.code, "message": error.message}}),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Unsigned requests are refused before any work, configuration included.
    if not _has_signature(event):
        return _missing_signature()
    bootstrap(*REQUIRED)
    start_invocation(context)
    response = handle_http(app, event, context, max_body_bytes=MAX_EVENT_BYTES)
    if int(response.get("statusCode", 200)) >= HTTPStatus.INTERNAL_SERVER_ERROR:
        # Stripe retries a 5xx, but days of them disable the endpoint: count them for an alarm.
        from aws_lambda_powertools.metrics import MetricUnit

        metrics = get_metrics()
        metrics.add_metric(name="WebhookServerErrors", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
    return response
