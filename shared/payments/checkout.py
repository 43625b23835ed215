"""Starting a Stripe Checkout: the money path a member takes from the Webflow page.

Rules: never show one price and charge another (the Stripe price behind each product is
checked against the catalog before selling), never create two sessions for one click (the
idempotency key comes from the member, the product and the client's key), never open a second
session for what the member already has open (the open one is returned again, and one it would
compete with is expired), and always tell the member what to do next (errors carry a message
for a person).

These checks spare the member a payment that would be refunded; they are not what guarantees
"one paid purchase per track": two tabs can still race past them, and the worker, where the
money actually arrives, refunds a duplicate payment in full (docs/reliability.md).

The click costs one database round trip before Stripe (``checkout_context``), the session
create, and one after (``record_checkout_session``). A member Stripe does not know yet gets no
customer search or create on the click: Checkout creates the customer and the worker maps it
when the session completes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal, Protocol

from payments import errors
from payments.adapters.store import Store
from payments.auth import Member
from payments.catalog import Catalog, Product, load_catalog
from payments.models import STRIPE_CUSTOMER_MISSING, CheckoutSession, StripePrice
from payments.observability import alert, logger
from payments.settings import Settings

PRICE_CACHE_SECONDS = 300.0
# Without a client Idempotency-Key, identical requests within this window are one click.
DOUBLE_CLICK_WINDOW_SECONDS = 60
MAX_CLIENT_KEY_LENGTH = 200


class PricingUnavailable(errors.UpstreamUnavailable):
    code = "pricing_unavailable"
    default_message = "Prices are being updated. Payment could not be started, please retry."


class AlreadyPurchased(errors.Conflict):
    code = "already_purchased"
    default_message = "You already own this product. Check your purchases before buying again."


class SubscriptionExists(errors.Conflict):
    code = "subscription_exists"
    default_message = (
        "You already have a plan. Change it from your subscriptions instead "
        "(a paused plan: resume it first)."
    )


class SwitchInProgress(errors.Conflict):
    code = "switch_in_progress"
    default_message = "This purchase has already been switched to another track."


class StripeGateway(Protocol):
    def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, StripePrice]: ...

    def create_checkout_session(
        self,
        *,
        mode: Literal["payment", "subscription"],
        price_id: str,
        customer_id: str | None,
        member_id: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> CheckoutSession: ...

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> None: ...


@dataclass(frozen=True)
class CheckoutUrls:
    success: str
    cancel: str

    @classmethod
    def from_settings(cls, success: str, cancel: str) -> CheckoutUrls:
        # Stripe fills {CHECKOUT_SESSION_ID}; the F5 page needs it to show the purchase.
        if "{CHECKOUT_SESSION_ID}" not in success:
            success += ("&" if "?" in success else "?") + "session_id={CHECKOUT_SESSION_ID}"
        return cls(success=success, cancel=cancel)


class PriceResolver:
    """Catalog product -> verified Stripe price id, cached per container for a few minutes."""

    def __init__(
        self,
        catalog: Catalog,
        stripe: StripeGateway,
        *,
        ttl_seconds: float = PRICE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._stripe = stripe
        self._ttl = ttl_seconds
        self._clock = clock
        self._prices: dict[str, StripePrice] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _current(self) -> dict[str, StripePrice]:
        with self._lock:
            if self._clock() - self._fetched_at > self._ttl:
                keys = [p.lookup_key for p in self._catalog.products]
                self._prices = self._stripe.prices_by_lookup_key(keys)
                self._fetched_at = self._clock()
            return self._prices

    def price_id(self, product: Product) -> str:
        """The Stripe price to charge for ``product``, or ``PricingUnavailable``."""
        price = self._current().get(product.lookup_key)
        problem = _drift(product, price)
        if problem is not None:
            # Force a re-read next time: the price may just have been fixed in Stripe.
            with self._lock:
                self._fetched_at = float("-inf")
            alert(
                "stripe price does not match the catalog",
                product=product.id,
                lookup_key=product.lookup_key,
                problem=problem,
            )
            raise PricingUnavailable()
        assert price is not None
        return price.id


def _drift(product: Product, price: StripePrice | None) -> str | None:
    if price is None:
        return "no active price with this lookup key"
    if not price.active:
        return "price inactive"
    if price.unit_amount != product.amount:
        return f"amount {price.unit_amount} != catalog {product.amount}"
    if price.currency.lower() != product.currency:
        return f"currency {price.currency} != catalog {product.currency}"
    if price.interval != product.interval:
        return f"interval {price.interval} != catalog {product.interval}"
    return None


def request_scope(client_key: str | None, now: float) -> str:
    """What makes a member's request unique: the client's ``Idempotency-Key`` when sent,
    else a short window in which identical requests count as one click."""
    if client_key is None:
        return f"window:{int(now // DOUBLE_CLICK_WINDOW_SECONDS)}"
    client_key = client_key.strip()
    if not client_key or len(client_key) > MAX_CLIENT_KEY_LENGTH or not client_key.isprintable():
        raise errors.InvalidRequest(
            "The Idempotency-Key header must be 1 to 200 printable characters.",
            code="invalid_idempotency_key",
        )
    return f"client:{client_key}"


def checkout_idempotency_key(
    member_id: str, product_id: str, client_key: str | None, now: float
) -> str:
    """Same member + product + client key -> same key (and so the same Stripe session)."""
    scope = request_scope(client_key, now)
    digest = hashlib.sha256(f"{member_id}\n{product_id}\n{scope}".encode()).hexdigest()
    return f"checkout-{digest[:48]}"


def session_metadata(
    member: Member, product: Product, extra: dict[str, str] | None = None
) -> dict[str, str]:
    metadata = {
        "member_id": member.id,
        "product": product.id,
        "track": product.id if product.mode == "payment" else "subscription",
        "plan": product.id if product.mode == "subscription" else "one_time",
    }
    metadata.update(extra or {})
    return metadata


@dataclass(frozen=True)
class CheckoutDeps:
    catalog: Catalog
    stripe: StripeGateway
    prices: PriceResolver
    store: Store
    urls: CheckoutUrls
    allow_repeat_purchases: bool = False


def start_checkout(
    deps: CheckoutDeps,
    member: Member,
    product_id: str,
    *,
    mode: Literal["payment", "subscription"] = "payment",
    client_key: str | None = None,
    extra_metadata: dict[str, str] | None = None,
    switch_from: str | None = None,
    now: float | None = None,
) -> CheckoutSession:
    """Create (or return the already created, or the still open) Checkout Session."""
    product = deps.catalog.get(product_id, mode=mode)
    # Fails fast on a bad client key, before any round trip.
    request_scope(client_key, 0.0)
    context = deps.store.call(
        "checkout_context",
        p_member_id=member.id,
        p_product=product.id,
        p_mode=mode,
        p_switch_from=switch_from,
    )
    if (
        mode == "payment"
        and context["owned"]
        and (switch_from is not None or not deps.allow_repeat_purchases)
    ):
        raise AlreadyPurchased()
    if mode == "subscription" and context["live_subscription"]:
        raise SubscriptionExists()
    if switch_from is not None and context.get("switch_paid"):
        raise SwitchInProgress()
    reusable = context.get("open_session")
    if reusable:
        logger.info(
            "open checkout session returned again",
            extra={"member_id": member.id, "session": reusable["id"], "product": product.id},
        )
        return CheckoutSession(id=reusable["id"], url=reusable["url"])

    price_id = deps.prices.price_id(product)
    metadata = session_metadata(member, product, extra_metadata)
    scope = product.id + (f":{switch_from}" if switch_from else "")
    now = time.time() if now is None else now
    expired = _expire_competing(deps, member, context.get("stale_sessions") or [])

    def create_session(customer_id: str | None) -> CheckoutSession:
        return deps.stripe.create_checkout_session(
            mode=mode,
            price_id=price_id,
            customer_id=customer_id,
            member_id=member.id,
            metadata=metadata,
            success_url=deps.urls.success,
            cancel_url=deps.urls.cancel,
            # The customer is part of the request: a replaced customer is a new request.
            idempotency_key=checkout_idempotency_key(
                member.id, f"{scope}:{customer_id or 'new'}", client_key, now
            ),
        )

    customer_id = context.get("customer_id")
    try:
        session = create_session(customer_id)
    except errors.NotFound as exc:
        if exc.code != STRIPE_CUSTOMER_MISSING or customer_id is None:
            raise
        # The stored customer no longer exists in Stripe: forget it, and let Checkout create
        # a new one (mapped when the session completes).
        logger.warning(
            "stripe customer missing, checkout will create a new one",
            extra={"member_id": member.id},
        )
        deps.store.call("forget_customer", p_member_id=member.id, p_stripe_customer_id=customer_id)
        session = create_session(None)
    deps.store.call(
        "record_checkout_session",
        p_checkout_session_id=session.id,
        p_member_id=member.id,
        p_product=product.id,
        p_amount=product.amount,
        p_currency=product.currency,
        p_switch_from=switch_from,
        p_metadata={"product": product.id, "mode": mode},
        p_mode=mode,
        p_url=session.url,
        p_expires_at=_iso(session.expires_at),
        p_expired_sessions=expired,
    )
    return session


def _expire_competing(deps: CheckoutDeps, member: Member, session_ids: list[str]) -> list[str]:
    """Expire open sessions a new one would compete with (another plan, another switch of the
    same original); the ids Stripe expired. One that could not be expired is being paid: the
    worker refunds it if it turns out to duplicate what the member pays for now."""
    expired = []
    for session_id in session_ids:
        try:
            deps.stripe.expire_checkout_session(session_id, idempotency_key=f"expire-{session_id}")
        except errors.PaymentsError as exc:
            logger.warning(
                "competing checkout session not expired",
                extra={"member_id": member.id, "session": session_id, "code": exc.code},
            )
            continue
        expired.append(session_id)
    return expired


def _iso(seconds: int | None) -> str | None:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat() if seconds else None


@lru_cache(maxsize=1)
def checkout_deps(settings: Settings) -> CheckoutDeps:
    """This container's checkout dependencies: one Stripe client, one price cache, shared by
    every route that starts a checkout (purchase, subscription, product switch)."""
    from payments.adapters.store import get_store
    from payments.adapters.stripe_service import get_stripe

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
