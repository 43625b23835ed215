"""Subscriptions function: subscribe to a plan, preview and change it, cancel, pause, resume,
list the member's subscriptions, and open Stripe's Billing Portal for the member.

Every route authenticates the Memberstack token; routes on one subscription act only for its
owner (anyone else gets 404). ``payments.subscriptions`` holds the rules.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict, Field

from payments import subscriptions
from payments.adapters.store import get_store
from payments.auth import Member, current_member
from payments.checkout import checkout_deps
from payments.deadline import start_invocation
from payments.http import handle_http, json_response, make_resolver, ok_response
from payments.models import CheckoutSession
from payments.observability import logger
from payments.runtime import bootstrap
from payments.schema import Model
from payments.settings import Settings, get_settings
from payments.subscription_models import (
    MEMBER_PAUSE_BEHAVIOR,
    ChangePreview,
    ChangeResult,
    MemberSubscriptions,
    PauseBehavior,
    SubscriptionView,
)

if TYPE_CHECKING:
    from payments import billing_portal

REQUIRED = (
    "stripe_secret_key",
    "memberstack_secret_key",
    "memberstack_app_id",
    "checkout_success_url",
    "checkout_cancel_url",
)
SUBSCRIPTION_ID = r"^sub_[A-Za-z0-9]{1,64}$"
# Personal data: never kept by a browser or a shared cache.
NO_STORE = {"Cache-Control": "no-store"}

app = make_resolver()

SubscriptionId = Annotated[str, Path(pattern=SUBSCRIPTION_ID, description="A Stripe sub_ id")]
PlanId = Annotated[str, Field(min_length=1, max_length=64, description="A subscription plan id")]


class SubscribeRequest(Model):
    model_config = ConfigDict(extra="forbid")

    product: PlanId


class PreviewChangeRequest(Model):
    model_config = ConfigDict(extra="forbid")

    product: PlanId


class ChangeRequest(Model):
    # The proration date and behaviour are the service's to decide: a body that names them
    # is refused (400) rather than silently ignored.
    model_config = ConfigDict(extra="forbid")

    product: PlanId
    quote: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=1024,
            description="The quote of a preview: the change is billed exactly as it showed. "
            "Without one, the change is prorated from now.",
        ),
    ] = None


class CancelRequest(Model):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = True


class PauseRequest(Model):
    model_config = ConfigDict(extra="forbid")

    # Stripe's three names are accepted so that the two the policy refuses get a 422 saying
    # why (payments.subscriptions.pause), not a bare validation error.
    behavior: Annotated[
        PauseBehavior,
        Field(
            description='Only "void" is offered: the paused periods are neither billed nor '
            "served. keep_as_draft and mark_uncollectible are refused (422).",
        ),
    ] = MEMBER_PAUSE_BEHAVIOR
    resumes_at: Annotated[
        int | None,
        Field(
            gt=0,
            description="Unix seconds, in the future and before the next renewal "
            "(422 otherwise). Without it the pause lasts until a resume.",
        ),
    ] = None


class ResumeRequest(Model):
    model_config = ConfigDict(extra="forbid")


class BillingPortalRequest(Model):
    model_config = ConfigDict(extra="forbid")


class BillingPortalSession(Model):
    """A Billing Portal session: send the member to its url at once (it is short-lived)."""

    url: str


class CheckoutSessionOut(Model):
    id: str
    url: str


@lru_cache(maxsize=1)
def _deps(settings: Settings) -> subscriptions.SubscriptionDeps:
    # The Stripe SDK is imported by the first route that calls Stripe, not by the cold start.
    from payments.adapters.stripe_subscriptions import get_stripe_subscriptions

    secret = settings.plan_quote_secret
    return subscriptions.SubscriptionDeps(
        checkout=checkout_deps(settings),
        subscriptions=get_stripe_subscriptions(settings),
        quote_secret=subscriptions.quote_secret(
            secret.get_secret_value() if secret else None, settings.value("stripe_secret_key")
        ),
    )


@lru_cache(maxsize=1)
def _portal_deps(settings: Settings) -> billing_portal.PortalDeps:
    # The portal's code is imported by its route, not by every cold start of this function.
    from payments import billing_portal
    from payments.adapters.stripe_service import get_stripe

    return billing_portal.PortalDeps(
        store=get_store(settings),
        stripe=get_stripe(settings),
        return_url=billing_portal.account_url(
            settings.account_url, settings.value("checkout_success_url")
        ),
    )


def _member(*, confirm: bool = False) -> Member:
    # ``confirm``: also asked of Memberstack (what charges the saved card, stops the service
    # or opens the card and invoices must not trust the plain-HTTP key set alone).
    return current_member(app.current_event.headers, confirm=confirm)


def _client_key() -> str | None:
    return app.current_event.headers.get("idempotency-key")


def _session(session: CheckoutSession) -> Response[str]:
    return json_response(201, {"id": session.id, "url": session.url})


@app.post(
    "/v1/subscriptions",
    summary="Start a Stripe Checkout for a subscription plan",
    responses=ok_response(
        CheckoutSessionOut, "The session to redirect to", 201, 401, 409, 502, 503
    ),
)
def subscribe(body: SubscribeRequest) -> Response[str]:
    member = _member()
    session = subscriptions.start_subscription(
        _deps(get_settings()), member, body.product, client_key=_client_key()
    )
    logger.info(
        "subscription checkout ready", extra={"member_id": member.id, "session": session.id}
    )
    return _session(session)


@app.post(
    "/v1/subscriptions/<subscription_id>/preview-change",
    summary="What a plan change costs now and at the next renewal, with a quote to apply it",
    responses=ok_response(ChangePreview, "The proration preview", 200, 401, 404, 409, 502, 503),
)
def preview_change(subscription_id: SubscriptionId, body: PreviewChangeRequest) -> Response[str]:
    member = _member()
    preview = subscriptions.preview_change(
        _deps(get_settings()), member, subscription_id, body.product
    )
    return json_response(200, preview.model_dump(mode="json"), NO_STORE)


@app.post(
    "/v1/subscriptions/<subscription_id>/change",
    summary="Move the subscription to another plan at a previewed quote's price, or from now",
    responses=ok_response(ChangeResult, "The changed subscription", 200, 401, 404, 409, 502),
)
def change(subscription_id: SubscriptionId, body: ChangeRequest) -> Response[str]:
    member = _member(confirm=True)
    result = subscriptions.change_plan(
        _deps(get_settings()),
        member,
        subscription_id,
        body.product,
        quote=body.quote,
        client_key=_client_key(),
    )
    logger.info(
        "subscription plan changed",
        extra={"member_id": member.id, "subscription": subscription_id, "product": body.product},
    )
    return json_response(200, result.model_dump(mode="json"), NO_STORE)


@app.post(
    "/v1/subscriptions/<subscription_id>/cancel",
    summary="Cancel at the end of the period (default) or at once",
    responses=ok_response(SubscriptionView, "The subscription", 200, 401, 404, 409, 502, 503),
)
def cancel(subscription_id: SubscriptionId, body: CancelRequest | None = None) -> Response[str]:
    body = body or CancelRequest()
    # Ends what the member pays for: Memberstack itself confirms the token (payments.auth).
    member = current_member(app.current_event.headers, confirm=True)
    view = subscriptions.cancel(
        _deps(get_settings()),
        member,
        subscription_id,
        at_period_end=body.at_period_end,
        client_key=_client_key(),
    )
    logger.info(
        "subscription canceled",
        extra={
            "member_id": member.id,
            "subscription": subscription_id,
            "at_period_end": body.at_period_end,
        },
    )
    return json_response(200, view.model_dump(mode="json"), NO_STORE)


@app.post(
    "/v1/subscriptions/<subscription_id>/pause",
    summary="Pause the plan: nothing billed and nothing served until it resumes",
    responses=ok_response(SubscriptionView, "The subscription", 200, 401, 404, 409, 422, 502),
)
def pause(subscription_id: SubscriptionId, body: PauseRequest | None = None) -> Response[str]:
    body = body or PauseRequest()
    member = _member(confirm=True)
    view = subscriptions.pause(
        _deps(get_settings()),
        member,
        subscription_id,
        behavior=body.behavior,
        resumes_at=body.resumes_at,
        client_key=_client_key(),
    )
    logger.info(
        "subscription paused", extra={"member_id": member.id, "subscription": subscription_id}
    )
    return json_response(200, view.model_dump(mode="json"), NO_STORE)


@app.post(
    "/v1/subscriptions/<subscription_id>/resume",
    summary="Resume a paused subscription, or undo a cancellation at period end",
    responses=ok_response(SubscriptionView, "The subscription", 200, 401, 404, 409, 502, 503),
)
def resume(subscription_id: SubscriptionId, body: ResumeRequest | None = None) -> Response[str]:
    member = _member(confirm=True)
    view = subscriptions.resume(
        _deps(get_settings()), member, subscription_id, client_key=_client_key()
    )
    logger.info(
        "subscription resumed", extra={"member_id": member.id, "subscription": subscription_id}
    )
    return json_response(200, view.model_dump(mode="json"), NO_STORE)


@app.get(
    "/v1/me/subscriptions",
    summary="The member's subscriptions",
    responses=ok_response(MemberSubscriptions, "The member's subscriptions", 200, 401, 503),
)
def my_subscriptions() -> Response[str]:
    member = _member()
    listed = subscriptions.member_subscriptions(get_store(get_settings()), member.id)
    return json_response(200, listed.model_dump(mode="json"), NO_STORE)


@app.post(
    "/v1/billing-portal",
    summary="Open Stripe's Billing Portal (card, invoices) for the member's customer",
    responses=ok_response(
        BillingPortalSession,
        "The portal session to redirect to",
        200,
        400,
        401,
        409,
        502,
        503,
    ),
)
def open_billing_portal(body: BillingPortalRequest | None = None) -> Response[str]:
    member = _member(confirm=True)
    from payments import billing_portal

    session = billing_portal.open_billing_portal(
        _portal_deps(get_settings()), member, client_key=_client_key(), now=time.time()
    )
    logger.info("billing portal opened", extra={"member_id": member.id})
    return json_response(200, session.model_dump(mode="json"), NO_STORE)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    return handle_http(app, event, context)
