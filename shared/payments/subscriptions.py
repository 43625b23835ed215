"""Subscription management: subscribe, preview and change a plan, cancel, pause, resume.

Rules:

* Only the owner acts on a subscription. Our ``subscriptions`` row names its member (from the
  metadata our checkout wrote) and the customer it is billed to, and Stripe's subscription must
  be billed to that customer: a member may hold several Stripe customers (two checkouts in
  flight before the first was paid each create one), so the member's mapped customer proves
  nothing. A subscription our row does not know yet must name the member in Stripe's own
  metadata. Anyone else is told it does not exist (404), never that it is someone else's (403).
* A plan is not changed while collection is paused (Stripe would leave the change's invoice a
  draft or void it: never paid), and a member pauses only with ``void``: the paused periods are
  neither billed nor served. Resuming bills the period running then if its invoice was voided.
* Stripe's live subscription decides whether an action makes sense (a canceled subscription is
  not canceled again, a paused one not paused again), because our table trails it by the time
  the webhook worker takes.
* Our table is written only by the worker from ``customer.subscription.*`` events, never from
  here: one writer keeps the ``state_as_of`` ordering simple, and an optimistic write stamped
  with our clock could hide a newer Stripe event of the same second. The responses below carry
  Stripe's answer, so the caller sees the new state at once.
* A plan change is priced by the server, never by the member. The preview returns, beside
  Stripe's amounts, a *quote*: an opaque token signed with a server secret (HMAC-SHA256) that
  binds the member, the subscription, the plan it starts from, the target plan, the proration
  date and behaviour, and expires after ``QUOTE_TTL_SECONDS``. The change applies a valid
  quote's date and behaviour, so the member is charged exactly what was shown, or, without a
  quote, prorates from now. The proration behaviour follows one rule
  (``proration_behavior_for``, docs/subscriptions.md): an upgrade or an interval change is
  invoiced at once, a downgrade credits the next invoice.
* Every Stripe POST carries an idempotency key derived from the member, the subscription, the
  action, its parameters and the client's ``Idempotency-Key`` (or, without one, a short window
  in which identical requests are one click), and every change writes a ``payment_logs`` row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from payments import errors
from payments.adapters.store import Store
from payments.auth import Member
from payments.catalog import Product
from payments.checkout import (
    CheckoutDeps,
    request_scope,
    start_checkout,
)
from payments.models import CheckoutSession
from payments.subscription_models import (
    MEMBER_PAUSE_BEHAVIOR,
    ChangePreview,
    ChangeResult,
    InvoicePreview,
    MemberSubscriptions,
    PauseBehavior,
    PreviewLineOut,
    ProrationBehavior,
    StripeSubscription,
    SubscriptionView,
)

Action = Literal["change", "cancel", "pause", "resume"]


# How long a previewed price may be accepted; DESIGN.md caps it at 10 minutes.
QUOTE_TTL_SECONDS = 600


class SubscriptionNotFound(errors.NotFound):
    code = "subscription_not_found"
    default_message = "No such subscription."


class SubscriptionEnded(errors.Conflict):
    code = "subscription_canceled"
    default_message = "This subscription is canceled."


class PlanUnchanged(errors.Conflict):
    code = "plan_unchanged"
    default_message = "The subscription is already on this plan."


class CancelAlreadyScheduled(errors.Conflict):
    code = "cancel_already_scheduled"
    default_message = "This subscription already ends at the end of the current period."


class AlreadyPaused(errors.Conflict):
    code = "already_paused"
    default_message = "This subscription is already paused."


class NothingToResume(errors.Conflict):
    code = "not_paused"
    default_message = "This subscription is neither paused nor set to cancel."


class QuoteInvalid(errors.Conflict):
    code = "quote_invalid"
    default_message = (
        "This price quote has expired or no longer matches the subscription. "
        "Preview the change again."
    )


class SubscriptionPaused(errors.Conflict):
    code = "subscription_paused"
    default_message = "This subscription is paused. Resume it before changing its plan."


class PauseBehaviorNotOffered(errors.Unprocessable):
    code = "pause_behavior_not_offered"
    default_message = (
        "A pause stops both the service and its payments: behavior must be "
        f'"{MEMBER_PAUSE_BEHAVIOR}" (or left out).'
    )


class ResumesAtAfterRenewal(errors.Unprocessable):
    code = "resumes_at_after_renewal"
    default_message = (
        "A pause with a resume date must end before the next renewal. To pause for longer, leave "
        "resumes_at out and resume when you want: resuming starts a new period, paid that day."
    )


class ResumesAtInPast(errors.Unprocessable):
    code = "resumes_at_in_past"
    default_message = "resumes_at must be in the future."


class SubscriptionGateway(Protocol):
    """The Stripe subscription calls (``adapters.stripe_subscriptions``)."""

    def retrieve(self, subscription_id: str) -> StripeSubscription: ...

    def preview_change(
        self,
        subscription_id: str,
        *,
        item_id: str,
        price_id: str,
        proration_date: int,
        proration_behavior: ProrationBehavior,
    ) -> InvoicePreview: ...

    def change_price(
        self,
        subscription_id: str,
        *,
        item_id: str,
        price_id: str,
        proration_behavior: ProrationBehavior,
        proration_date: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeSubscription: ...

    def cancel_at_period_end(
        self, subscription_id: str, idempotency_key: str
    ) -> StripeSubscription: ...

    def cancel_now(self, subscription_id: str, idempotency_key: str) -> StripeSubscription: ...

    def pause_collection(
        self,
        subscription_id: str,
        *,
        behavior: PauseBehavior,
        resumes_at: int | None,
        idempotency_key: str,
    ) -> StripeSubscription: ...

    def clear_pause_and_cancellation(
        self,
        subscription_id: str,
        *,
        clear_cancel: bool,
        restart_period: bool,
        idempotency_key: str,
    ) -> StripeSubscription: ...

    def resume_paused(self, subscription_id: str, idempotency_key: str) -> StripeSubscription: ...


@dataclass(frozen=True)
class SubscriptionDeps:
    checkout: CheckoutDeps
    subscriptions: SubscriptionGateway
    # Signs plan-change quotes; see quote_secret().
    quote_secret: bytes
    clock: Callable[[], float] = field(default=time.time)

    @property
    def store(self) -> Store:
        return self.checkout.store


# --- subscribe ------------------------------------------------------------------------------


def start_subscription(
    deps: SubscriptionDeps, member: Member, product_id: str, *, client_key: str | None = None
) -> CheckoutSession:
    """A Checkout Session in subscription mode, for a member who holds no live subscription
    (``SubscriptionExists`` otherwise: one plan at a time, changed with ``change_plan``)."""
    product = deps.checkout.catalog.get(product_id, mode="subscription")
    return start_checkout(
        deps.checkout,
        member,
        product.id,
        mode="subscription",
        client_key=client_key,
        now=deps.clock(),
    )


def member_subscriptions(store: Store, member_id: str) -> MemberSubscriptions:
    """The member's subscriptions from our table, read under RLS as that member."""
    rows = store.call_as_member(member_id, "member_subscriptions") or []
    return MemberSubscriptions(subscriptions=[SubscriptionView.model_validate(r) for r in rows])


# --- ownership ------------------------------------------------------------------------------


def owned_subscription(
    deps: SubscriptionDeps, member: Member, subscription_id: str
) -> StripeSubscription:
    """Stripe's current subscription if ``member`` owns it, else ``SubscriptionNotFound``.

    Our row decides the owner and the customer the subscription is billed to; before the worker
    has recorded it, Stripe's own record must name the member (our checkout's metadata), or be
    billed to the member's mapped customer when it names nobody.
    """
    access = deps.store.call(
        "subscription_access", p_member_id=member.id, p_subscription_id=subscription_id
    )
    if not isinstance(access, Mapping) or not access.get("allowed"):
        raise SubscriptionNotFound()
    try:
        subscription = deps.subscriptions.retrieve(subscription_id)
    except errors.NotFound:
        raise SubscriptionNotFound() from None
    billed_to = access.get("customer_id")
    if billed_to is not None:
        if subscription.customer != billed_to:
            raise SubscriptionNotFound()
    elif subscription.member_id is not None:
        if subscription.member_id != member.id:
            raise SubscriptionNotFound()
    elif not access.get("member_customer") or subscription.customer != access["member_customer"]:
        raise SubscriptionNotFound()
    return subscription


# --- plan change ----------------------------------------------------------------------------


def quote_secret(configured: str | None, stripe_secret_key: str) -> bytes:
    """The key that signs quotes: ``PLAN_QUOTE_SECRET`` when set, else one derived from the
    Stripe secret key (so a deployment needs no extra secret, and rotating the Stripe key
    voids outstanding quotes, which live ten minutes anyway)."""
    if configured:
        return configured.encode()
    return hmac.new(stripe_secret_key.encode(), b"plan-change-quote/v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class Quote:
    """What a preview priced: only a change of exactly this may use its date and behaviour."""

    member: str
    subscription: str
    from_price: str | None
    product: str
    proration_date: int
    behavior: ProrationBehavior
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_quote(secret: bytes, quote: Quote) -> str:
    body = json.dumps(
        {
            "v": 1,
            "m": quote.member,
            "s": quote.subscription,
            "f": quote.from_price,
            "p": quote.product,
            "d": quote.proration_date,
            "b": quote.behavior,
            "e": quote.expires_at,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


MAX_QUOTE_LENGTH = 1024


def read_quote(secret: bytes, token: str, now: float) -> Quote:
    """The quote a token carries if we signed it and it has not expired; else ``QuoteInvalid``."""
    body_part, _, mac_part = token.partition(".")
    if not body_part or not mac_part or len(token) > MAX_QUOTE_LENGTH:
        raise QuoteInvalid()
    try:
        body, mac = _unb64(body_part), _unb64(mac_part)
    except (binascii.Error, ValueError):
        raise QuoteInvalid() from None
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        raise QuoteInvalid()
    try:
        raw = json.loads(body)
        quote = Quote(
            member=str(raw["m"]),
            subscription=str(raw["s"]),
            from_price=raw["f"],
            product=str(raw["p"]),
            proration_date=int(raw["d"]),
            behavior=raw["b"],
            expires_at=int(raw["e"]),
        )
    except (ValueError, KeyError, TypeError):
        raise QuoteInvalid() from None
    if raw.get("v") != 1 or quote.expires_at <= now:
        raise QuoteInvalid()
    return quote


def proration_behavior_for(current: Product | None, target: Product) -> ProrationBehavior:
    """The one rule for how a plan change is billed (docs/subscriptions.md).

    An upgrade is invoiced at once: deferring its price to the next renewal would let a member
    upgrade and cancel at period end without ever paying for the better plan. A move to another
    interval restarts the billing cycle, which Stripe invoices at once too. A downgrade (or a
    move at the same price) credits the unused part of the old plan against the next invoice.
    """
    if current is None or current.interval != target.interval:
        return "always_invoice"
    return "always_invoice" if target.amount > current.amount else "create_prorations"


def preview_change(
    deps: SubscriptionDeps, member: Member, subscription_id: str, product_id: str
) -> ChangePreview:
    """What moving to ``product_id`` costs now and at the next renewal, priced by Stripe, with
    the signed quote that lets ``change_plan`` bill exactly that."""
    product = deps.checkout.catalog.get(product_id, mode="subscription")
    subscription = owned_subscription(deps, member, subscription_id)
    item_id, price_id = _changeable(deps, subscription, product)
    now = deps.clock()
    proration_date = resolve_proration_date(subscription, now)
    behavior = proration_behavior_for(_current_product(deps, subscription), product)
    preview = deps.subscriptions.preview_change(
        subscription.id,
        item_id=item_id,
        price_id=price_id,
        proration_date=proration_date,
        proration_behavior=behavior,
    )
    prorations = sum(line.amount for line in preview.lines if line.proration)
    if behavior == "always_invoice":
        # The preview is the invoice issued now; a credit it leaves reduces the next renewal.
        due_now = preview.amount_due
        next_renewal = max(0, product.amount + preview.ending_balance)
    else:
        # The preview is the next renewal's invoice, prorations included.
        due_now, next_renewal = 0, preview.amount_due
    expires_at = int(now) + QUOTE_TTL_SECONDS
    quote = Quote(
        member=member.id,
        subscription=subscription.id,
        from_price=subscription.price_id,
        product=product.id,
        proration_date=proration_date,
        behavior=behavior,
        expires_at=expires_at,
    )
    return ChangePreview(
        subscription=subscription.id,
        product=product.id,
        proration_behavior=behavior,
        proration_date=proration_date,
        amount_due_now=due_now,
        next_renewal_amount=next_renewal,
        proration_amount=prorations,
        currency=preview.currency,
        lines=[
            PreviewLineOut(
                description=line.description, amount=line.amount, proration=line.proration
            )
            for line in preview.lines
        ],
        quote=sign_quote(deps.quote_secret, quote),
        quote_expires_at=datetime.fromtimestamp(expires_at, tz=UTC),
    )


def change_plan(
    deps: SubscriptionDeps,
    member: Member,
    subscription_id: str,
    product_id: str,
    *,
    quote: str | None = None,
    client_key: str | None = None,
) -> ChangeResult:
    """Swap the subscription's plan at a previewed quote's price, or prorated from now."""
    product = deps.checkout.catalog.get(product_id, mode="subscription")
    subscription = owned_subscription(deps, member, subscription_id)
    item_id, price_id = _changeable(deps, subscription, product)
    now = deps.clock()
    if quote is not None:
        quoted = read_quote(deps.quote_secret, quote, now)
        if (
            quoted.member != member.id
            or quoted.subscription != subscription.id
            or quoted.product != product.id
            or quoted.from_price != subscription.price_id
            or not _in_period(subscription, quoted.proration_date)
        ):
            raise QuoteInvalid()
        proration_date, behavior = quoted.proration_date, quoted.behavior
    else:
        proration_date = resolve_proration_date(subscription, now)
        behavior = proration_behavior_for(_current_product(deps, subscription), product)
    previous = _product_of(deps, subscription)
    key = action_idempotency_key(
        member.id,
        subscription.id,
        "change",
        {"product": product.id, "behavior": behavior, "date": proration_date},
        client_key,
        now,
    )
    updated = deps.subscriptions.change_price(
        subscription.id,
        item_id=item_id,
        price_id=price_id,
        proration_behavior=behavior,
        proration_date=proration_date,
        # The worker names the plan from this metadata: keep it in step with the price.
        metadata={"product": product.id, "plan": product.id},
        idempotency_key=key,
    )
    _log(
        deps,
        member,
        updated,
        "change",
        key,
        amount=product.amount,
        currency=product.currency,
        details={
            "product": product.id,
            "from_product": previous,
            "proration_behavior": behavior,
            "proration_date": proration_date,
            "priced_by": "quote" if quote is not None else "now",
        },
    )
    view = subscription_view(deps, updated)
    return ChangeResult(
        **view.model_dump(),
        proration_behavior=behavior,
        proration_date=proration_date,
    )


# --- cancel, pause, resume ------------------------------------------------------------------


def cancel(
    deps: SubscriptionDeps,
    member: Member,
    subscription_id: str,
    *,
    at_period_end: bool = True,
    client_key: str | None = None,
) -> SubscriptionView:
    """Cancel at the end of the period (undone by ``resume``) or at once."""
    subscription = owned_subscription(deps, member, subscription_id)
    if subscription.is_ended:
        raise SubscriptionEnded("This subscription is already canceled.")
    if at_period_end and subscription.cancel_at_period_end:
        raise CancelAlreadyScheduled()
    key = action_idempotency_key(
        member.id,
        subscription.id,
        "cancel",
        {"at_period_end": at_period_end},
        client_key,
        deps.clock(),
    )
    updated = (
        deps.subscriptions.cancel_at_period_end(subscription.id, key)
        if at_period_end
        else deps.subscriptions.cancel_now(subscription.id, key)
    )
    _log(deps, member, updated, "cancel", key, details={"at_period_end": at_period_end})
    return subscription_view(deps, updated)


def pause(
    deps: SubscriptionDeps,
    member: Member,
    subscription_id: str,
    *,
    behavior: PauseBehavior = MEMBER_PAUSE_BEHAVIOR,
    resumes_at: int | None = None,
    client_key: str | None = None,
) -> SubscriptionView:
    """Pause the plan, until ``resumes_at`` (unix seconds, before the next renewal) or a ``resume``:
    Stripe voids the invoices of the periods it covers, and the plan is not served meanwhile.
    Only ``void`` is offered: with ``keep_as_draft`` or ``mark_uncollectible`` Stripe collects
    nothing either while the subscription stays ``active``, which is the plan for free."""
    now = deps.clock()
    if behavior != MEMBER_PAUSE_BEHAVIOR:
        raise PauseBehaviorNotOffered()
    if resumes_at is not None and resumes_at <= now:
        raise ResumesAtInPast()
    subscription = owned_subscription(deps, member, subscription_id)
    if subscription.is_ended:
        raise SubscriptionEnded()
    if subscription.is_paused:
        raise AlreadyPaused()
    end = subscription.current_period_end
    # At the renewal's own second Stripe may renew (voided) before it resumes: strictly before.
    if resumes_at is not None and (end is None or resumes_at >= end):
        # Stripe would resume collection in the middle of a period whose invoice it voided,
        # and serve the rest of that period unpaid until the next renewal.
        raise ResumesAtAfterRenewal()
    key = action_idempotency_key(
        member.id,
        subscription.id,
        "pause",
        {"behavior": behavior, "resumes_at": resumes_at},
        client_key,
        now,
    )
    updated = deps.subscriptions.pause_collection(
        subscription.id, behavior=behavior, resumes_at=resumes_at, idempotency_key=key
    )
    _log(
        deps,
        member,
        updated,
        "pause",
        key,
        details={"behavior": behavior, "resumes_at": resumes_at},
    )
    return subscription_view(deps, updated)


def resume(
    deps: SubscriptionDeps,
    member: Member,
    subscription_id: str,
    *,
    client_key: str | None = None,
) -> SubscriptionView:
    """Undo a pause and a scheduled cancellation. A pause that voided the invoice of the period
    running now restarts the billing cycle today, invoiced in full: otherwise the rest of that
    period would be served without being paid for."""
    subscription = owned_subscription(deps, member, subscription_id)
    if subscription.is_ended:
        raise SubscriptionEnded()
    if not (subscription.is_paused or subscription.cancel_at_period_end):
        raise NothingToResume()
    key = action_idempotency_key(member.id, subscription.id, "resume", {}, client_key, deps.clock())
    updated = subscription
    resumed_paused = subscription.status == "paused"
    if resumed_paused:
        # Stripe's resume starts a new period and invoices it: the period is restarted then.
        updated = deps.subscriptions.resume_paused(subscription.id, key)
    restart_period = (
        not resumed_paused
        and updated.pause_behavior is not None
        and subscription.current_period_unpaid
    )
    if updated.pause_behavior is not None or updated.cancel_at_period_end:
        updated = deps.subscriptions.clear_pause_and_cancellation(
            subscription.id,
            clear_cancel=updated.cancel_at_period_end,
            restart_period=restart_period,
            idempotency_key=f"{key}-clear",
        )
    _log(
        deps,
        member,
        updated,
        "resume",
        key,
        details={
            "was_paused": subscription.is_paused,
            "was_canceling": subscription.cancel_at_period_end,
            "period_restarted": restart_period or None,
        },
    )
    return subscription_view(deps, updated)


# --- helpers --------------------------------------------------------------------------------


def action_idempotency_key(
    member_id: str,
    subscription_id: str,
    action: Action,
    params: Mapping[str, Any],
    client_key: str | None,
    now: float,
) -> str:
    """Same member, subscription, action, parameters and client key -> same Stripe request.

    Without a client key, identical requests within a short window count as one click. The
    parameters are part of the key so that a reused client key with other details is a new
    request rather than a Stripe ``idempotency_error``.
    """
    scope = request_scope(client_key, now)
    material = "\n".join(
        (member_id, subscription_id, action, json.dumps(params, sort_keys=True), scope)
    )
    return f"subscription-{action}-{hashlib.sha256(material.encode()).hexdigest()[:48]}"


def subscription_view(deps: SubscriptionDeps, subscription: StripeSubscription) -> SubscriptionView:
    return SubscriptionView(
        id=subscription.id,
        product=_product_of(deps, subscription),
        status=subscription.status,
        paused=subscription.is_paused,
        pause_behavior=subscription.pause_behavior,
        resumes_at=_datetime(subscription.resumes_at),
        cancel_at_period_end=subscription.cancel_at_period_end,
        current_period_end=_datetime(subscription.current_period_end),
    )


def _changeable(
    deps: SubscriptionDeps, subscription: StripeSubscription, product: Product
) -> tuple[str, str]:
    """``(item id, new price id)`` of a change that makes sense, or why it does not."""
    if subscription.is_ended:
        raise SubscriptionEnded()
    if subscription.is_paused:
        raise SubscriptionPaused()
    if subscription.item_id is None:
        raise errors.Conflict("This subscription has no plan to change.", code="no_plan")
    price_id = deps.checkout.prices.price_id(product)
    if subscription.price_id == price_id or subscription.price_lookup_key == product.lookup_key:
        raise PlanUnchanged()
    return subscription.item_id, price_id


def resolve_proration_date(subscription: StripeSubscription, now: float) -> int:
    """Now, kept inside the current period (a subscription on a Stripe test clock may live
    ahead of the wall clock)."""
    start, end = subscription.current_period_start, subscription.current_period_end
    moment = int(now)
    if start is not None and end is not None:
        moment = min(max(moment, start), end - 1)
    return moment


def _in_period(subscription: StripeSubscription, moment: int) -> bool:
    start, end = subscription.current_period_start, subscription.current_period_end
    return start is not None and end is not None and start <= moment < end


def _current_product(deps: SubscriptionDeps, subscription: StripeSubscription) -> Product | None:
    if subscription.price_lookup_key is None:
        return None
    return deps.checkout.catalog.by_lookup_key(subscription.price_lookup_key)


def _product_of(deps: SubscriptionDeps, subscription: StripeSubscription) -> str | None:
    if subscription.price_lookup_key is None:
        return None
    product = deps.checkout.catalog.by_lookup_key(subscription.price_lookup_key)
    return product.id if product else None


def _datetime(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds else None


def _log(
    deps: SubscriptionDeps,
    member: Member,
    subscription: StripeSubscription,
    action: Action,
    idempotency_key: str,
    *,
    amount: int | None = None,
    currency: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    deps.store.call(
        "log_subscription_action",
        p_member_id=member.id,
        p_subscription_id=subscription.id,
        p_action=action,
        p_idempotency_key=idempotency_key,
        p_status=subscription.status,
        p_amount=amount,
        p_currency=currency,
        p_metadata={key: value for key, value in (details or {}).items() if value is not None},
    )
