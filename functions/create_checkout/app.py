"""Create-checkout function: ``POST /v1/checkout/sessions`` for a signed-in member."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from payments.adapters.store import get_store
from payments.adapters.stripe_service import get_stripe
from payments.auth import authenticate, get_verifier
from payments.catalog import load_catalog
from payments.checkout import CheckoutDeps, CheckoutUrls, PriceResolver, start_checkout
from payments.deadline import start_invocation
from payments.http import handle_http, json_response, make_resolver, ok_response
from payments.observability import logger
from payments.runtime import bootstrap
from payments.settings import Settings, get_settings

REQUIRED = (
    "stripe_secret_key",
    "memberstack_secret_key",
    "memberstack_app_id",
    "checkout_success_url",
    "checkout_cancel_url",
)

app = make_resolver()


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: Annotated[str, Field(min_length=1, max_length=64, description="A one-time product id")]


class CheckoutSessionOut(BaseModel):
    id: str
    url: str


@lru_cache(maxsize=1)
def _deps(settings: Settings) -> CheckoutDeps:
    catalog = load_catalog()
    stripe = get_stripe(settings)
    return CheckoutDeps(
        catalog=catalog,
        stripe=stripe,
        prices=PriceResolver(catalog, stripe),
        store=get_store(settings),
        urls=CheckoutUrls.from_settings(
            settings.value("checkout_success_url"), settings.value("checkout_cancel_url")
        ),
        allow_repeat_purchases=settings.allow_repeat_purchases,
    )


@app.post(
    "/v1/checkout/sessions",
    summary="Start a Stripe Checkout for a one-time product",
    responses=ok_response(
        CheckoutSessionOut, "The session to redirect to", 201, 401, 409, 502, 503
    ),
)
def create_checkout_session(body: CheckoutRequest) -> Response[str]:
    settings = get_settings()
    headers = app.current_event.headers
    member = authenticate(headers, get_verifier(settings), settings.admin_member_ids)
    session = start_checkout(
        _deps(settings), member, body.product, client_key=headers.get("idempotency-key")
    )
    logger.info("checkout session ready", extra={"member_id": member.id, "session": session.id})
    return json_response(201, {"id": session.id, "url": session.url})


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    return handle_http(app, event, context)
