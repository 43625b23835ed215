"""Refunds function: admin refunds and their history, and a member's product switch.

``POST /v1/refunds`` and ``GET /v1/refunds`` are for administrators (``ADMIN_MEMBER_IDS``);
``POST /v1/purchases/switch`` is for the member who made the purchase.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import refund_records, refunds
from payments.adapters.store import get_store
from payments.auth import Member, current_member, require_admin
from payments.checkout import checkout_deps
from payments.deadline import start_invocation
from payments.http import handle_http, json_response, make_resolver, ok_response
from payments.observability import logger
from payments.runtime import bootstrap
from payments.schema import Model
from payments.settings import Settings, get_settings

REQUIRED = (
    "stripe_secret_key",
    "memberstack_secret_key",
    "memberstack_app_id",
    "checkout_success_url",
    "checkout_cancel_url",
)
# Refund records name who asked and why: never kept by a browser or a shared cache.
NO_STORE = {"Cache-Control": "no-store"}

app = make_resolver()


class CheckoutSessionOut(Model):
    id: str
    url: str


@lru_cache(maxsize=1)
def _refund_deps(settings: Settings) -> refunds.RefundDeps:
    # The Stripe SDK is imported by the first route that calls Stripe (the refund history
    # does not), not by the cold start.
    from payments.adapters.stripe_service import get_stripe

    return refunds.RefundDeps(store=get_store(settings), payments=get_stripe(settings))


def _switch_deps(settings: Settings) -> refunds.SwitchDeps:
    from payments.adapters.stripe_service import get_stripe

    return refunds.SwitchDeps(checkout=checkout_deps(settings), payments=get_stripe(settings))


def _member() -> Member:
    return current_member(app.current_event.headers)


@app.post(
    "/v1/refunds",
    summary="Refund a payment, fully or partly (admin)",
    responses=ok_response(
        refund_records.RefundOut,
        "The refund (status may be pending)",
        201,
        400,
        401,
        403,
        404,
        409,
        422,
        502,
        503,
    ),
)
def create_refund(body: refunds.RefundRequest) -> Response[str]:
    admin = _member()
    require_admin(admin, "refund")
    refund = refunds.request_refund(
        _refund_deps(get_settings()),
        admin,
        body,
        client_key=app.current_event.headers.get("idempotency-key"),
    )
    return json_response(201, refund.model_dump(mode="json"), NO_STORE)


@app.get(
    "/v1/refunds",
    summary="The refund history of a payment, newest first (admin)",
    responses=ok_response(refunds.RefundHistory, "The refunds", 200, 401, 403, 404, 503),
)
def list_refunds(
    payment_intent: Annotated[str, Query(pattern=refund_records.PAYMENT_INTENT_PATTERN)],
) -> Response[str]:
    admin = _member()
    require_admin(admin, "list_refunds")
    history = refunds.refund_history(get_store(get_settings()), payment_intent)
    return json_response(200, history.model_dump(mode="json"), NO_STORE)


@app.post(
    "/v1/purchases/switch",
    summary="Switch a one-time purchase to another track (pay the new one, get refunded)",
    responses=ok_response(
        CheckoutSessionOut,
        "The Checkout Session of the new track",
        201,
        400,
        401,
        404,
        409,
        502,
        503,
    ),
)
def switch_purchase(body: refunds.SwitchRequest) -> Response[str]:
    # It refunds the purchase it replaces: Memberstack itself confirms the token (payments.auth).
    member = current_member(app.current_event.headers, confirm=True)
    session = refunds.switch_purchase(
        _switch_deps(get_settings()),
        member,
        body,
        client_key=app.current_event.headers.get("idempotency-key"),
    )
    return json_response(201, {"id": session.id, "url": session.url})


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    return handle_http(app, event, context)
