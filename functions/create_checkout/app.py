"""Create-checkout function: ``POST /v1/checkout/sessions`` for a signed-in member."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict, Field

from payments.auth import current_member
from payments.checkout import checkout_deps, start_checkout
from payments.deadline import start_invocation
from payments.http import handle_http, json_response, make_resolver, ok_response
from payments.observability import logger
from payments.runtime import bootstrap
from payments.schema import Model
from payments.settings import get_settings

REQUIRED = (
    "stripe_secret_key",
    "memberstack_secret_key",
    "memberstack_app_id",
    "checkout_success_url",
    "checkout_cancel_url",
)

app = make_resolver()


class CheckoutRequest(Model):
    model_config = ConfigDict(extra="forbid")

    product: Annotated[str, Field(min_length=1, max_length=64, description="A one-time product id")]


class CheckoutSessionOut(Model):
    id: str
    url: str


@app.post(
    "/v1/checkout/sessions",
    summary="Start a Stripe Checkout for a one-time product",
    responses=ok_response(
        CheckoutSessionOut, "The session to redirect to", 201, 401, 409, 502, 503
    ),
)
def create_checkout_session(body: CheckoutRequest) -> Response[str]:
    headers = app.current_event.headers
    member = current_member(headers)
    session = start_checkout(
        checkout_deps(get_settings()),
        member,
        body.product,
        client_key=headers.get("idempotency-key"),
    )
    logger.info("checkout session ready", extra={"member_id": member.id, "session": session.id})
    return json_response(201, {"id": session.id, "url": session.url})


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    return handle_http(app, event, context)
