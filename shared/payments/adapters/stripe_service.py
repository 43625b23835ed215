"""Stripe adapter: one ``StripeClient`` per container, typed params, bounded retries.

Retries follow DESIGN.md §6: network errors, 429, 5xx and ``Stripe-Should-Retry: true`` are
retried with exponential backoff (2^i × 1 s), at most 3 times, and never past the Lambda's
remaining time. Card and validation errors are not retried. Every POST carries an idempotency
key chosen by the caller from the business intent, so a retry can never charge twice.
Stripe exceptions become domain errors here; nothing above this module imports ``stripe``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal, TypeVar

import httpx
import stripe
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from payments import errors
from payments.deadline import remaining_seconds
from payments.models import (
    STRIPE_CUSTOMER_MISSING,
    CheckoutSession,
    IssuedRefund,
    PaymentSnapshot,
    StripePrice,
)
from payments.observability import logger
from payments.settings import Settings

T = TypeVar("T")

MAX_RETRIES = 3
TIMEOUT = httpx.Timeout(8.0, connect=3.0)


def is_retryable(exc: BaseException) -> bool:
    """Whether Stripe (or the network) invites a retry of the same request."""
    if not isinstance(exc, stripe.StripeError):
        return False
    headers = exc.headers or {}
    should_retry = headers.get("stripe-should-retry") or headers.get("Stripe-Should-Retry")
    if should_retry == "false":
        return False
    if should_retry == "true" or isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = exc.http_status or 0
    return status >= 500 and not isinstance(exc, stripe.CardError)


_REFUND_REFUSALS: dict[str, tuple[type[errors.PaymentsError], str, str]] = {
    "charge_already_refunded": (
        errors.Conflict,
        "already_fully_refunded",
        "This payment has already been fully refunded.",
    ),
    "amount_too_large": (
        errors.Unprocessable,
        "refund_exceeds_refundable",
        "The amount is more than what is left to refund.",
    ),
    "charge_disputed": (
        errors.Conflict,
        "payment_disputed",
        "This payment is disputed; it cannot be refunded.",
    ),
    "charge_not_refundable": (
        errors.Conflict,
        "payment_not_refundable",
        "This payment has not succeeded; there is nothing to refund.",
    ),
}


def to_domain_error(exc: stripe.StripeError) -> errors.PaymentsError:
    """One place that decides what each Stripe failure means to our callers."""
    message = "Payment could not be started, please retry."
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return errors.UpstreamUnavailable(message, code="stripe_unavailable")
    if isinstance(exc, stripe.CardError):
        return errors.Unprocessable("The card was declined.", code="card_declined")
    if isinstance(exc, stripe.IdempotencyError):
        return errors.Conflict(
            "This request was already made with different details.", code="idempotency_conflict"
        )
    if isinstance(exc, stripe.InvalidRequestError) and exc.code == "resource_missing":
        if exc.param == "customer":
            # Our stored customer is gone from Stripe (deleted in the Dashboard, a database
            # restored against another account): callers can recover by creating a new one.
            return errors.NotFound("Not found.", code=STRIPE_CUSTOMER_MISSING)
        return errors.NotFound("Not found.", code="stripe_resource_missing")
    if isinstance(exc, stripe.InvalidRequestError) and exc.code in _REFUND_REFUSALS:
        # Stripe refused a refund on the payment's state: a definite answer, not an outage.
        error_type, code, text = _REFUND_REFUSALS[exc.code]
        return error_type(text, code=code)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        logger.error("stripe rejected our credentials", extra={"stripe_code": exc.code})
        return errors.UpstreamError(message, code="stripe_error")
    return errors.UpstreamError(message, code="stripe_error")


class _StopWhenOutOfTime(stop_base):
    """Stop retrying when the next wait would not leave time for another attempt."""

    def __init__(self, wait: Callable[[RetryCallState], float]) -> None:
        self._wait = wait

    def __call__(self, state: RetryCallState) -> bool:
        return self._wait(state) >= remaining_seconds()


class StripeService:
    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        retry_base_seconds: float = 1.0,
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            # Retries are ours (below): Stripe's own would neither retry 429 nor stop at
            # the Lambda's deadline.
            max_network_retries=0,
            http_client=http_client or stripe.HTTPXClient(timeout=TIMEOUT, allow_sync_methods=True),
        )
        self._retry_base_seconds = retry_base_seconds

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one Stripe request with bounded retries; raise a domain error on failure."""
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(MAX_RETRIES + 1) | _StopWhenOutOfTime(self._next_wait),
            wait=self._next_wait,
            reraise=True,
            before_sleep=lambda state: logger.warning(
                "retrying stripe call",
                extra={"operation": operation, "attempt": state.attempt_number},
            ),
        )
        try:
            return retrying(fn)
        except stripe.StripeError as exc:
            logger.warning(
                "stripe call failed",
                extra={
                    "operation": operation,
                    "http_status": exc.http_status,
                    "stripe_code": exc.code,
                    "request_id": exc.request_id,
                },
            )
            raise to_domain_error(exc) from exc

    def _next_wait(self, state: RetryCallState) -> float:
        # 2^i × base for the i-th retry: 1 s, 2 s, 4 s with the default base.
        return float(self._retry_base_seconds * 2 ** (state.attempt_number - 1))

    # --- prices and customers -------------------------------------------------------------

    def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, StripePrice]:
        found = self.call(
            "prices.list",
            lambda: self.client.v1.prices.list(
                params={"lookup_keys": lookup_keys, "active": True, "limit": 100}
            ),
        )
        return {
            price.lookup_key: _price(price) for price in found.data if price.lookup_key is not None
        }

    def find_customer_by_member(self, member_id: str) -> str | None:
        result = self.call(
            "customers.search",
            lambda: self.client.v1.customers.search(
                params={"query": f"metadata['member_id']:'{_quote(member_id)}'", "limit": 1}
            ),
        )
        return result.data[0].id if result.data else None

    def create_customer(self, member_id: str, idempotency_key: str) -> str:
        customer = self.call(
            "customers.create",
            lambda: self.client.v1.customers.create(
                params={"metadata": {"member_id": member_id}},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return customer.id

    # --- checkout ---------------------------------------------------------------------------

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
    ) -> CheckoutSession:
        """A hosted Checkout Session; without ``customer_id``, Checkout creates the customer
        (the worker maps it to the member when the session completes)."""
        params: stripe.params.checkout.SessionCreateParams = {
            "mode": mode,
            "line_items": [{"price": price_id, "quantity": 1}],
            "client_reference_id": member_id,
            "metadata": metadata,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        if customer_id is not None:
            params["customer"] = customer_id
        if mode == "payment":
            params["payment_intent_data"] = {"metadata": metadata}
            if customer_id is None:
                params["customer_creation"] = "always"
        else:
            params["subscription_data"] = {"metadata": metadata}
        session = self.call(
            "checkout.sessions.create",
            lambda: self.client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": idempotency_key}
            ),
        )
        return CheckoutSession(id=session.id, url=session.url, expires_at=session.expires_at)

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> None:
        """Close an open session so that it can no longer be paid."""
        self.call(
            "checkout.sessions.expire",
            lambda: self.client.v1.checkout.sessions.expire(
                session_id, options={"idempotency_key": idempotency_key}
            ),
        )

    # --- refunds ----------------------------------------------------------------------------

    def create_refund(
        self,
        payment_intent: str,
        *,
        idempotency_key: str,
        amount: int | None = None,
        reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> IssuedRefund:
        """Refund a payment (all that is left of it when ``amount`` is None)."""
        params: stripe.params.RefundCreateParams = {"payment_intent": payment_intent}
        if amount is not None:
            params["amount"] = amount
        if reason is not None:
            params["reason"] = reason
        if metadata:
            params["metadata"] = metadata
        refund = self.call(
            "refunds.create",
            lambda: self.client.v1.refunds.create(
                params=params, options={"idempotency_key": idempotency_key}
            ),
        )
        return IssuedRefund(
            id=refund.id,
            payment_intent=payment_intent,
            amount=refund.amount,
            currency=refund.currency,
            status=refund.status or "pending",
        )

    # --- customer portal --------------------------------------------------------------------

    def portal_configurations(self) -> list[dict[str, Any]]:
        """The account's active portal configurations as Stripe's JSON, newest first (one page
        of 100: an account holds a handful)."""
        params: stripe.params.billing_portal.ConfigurationListParams = {
            "active": True,
            "limit": 100,
        }
        listed = self.call(
            "billing_portal.configurations.list",
            lambda: self.client.v1.billing_portal.configurations.list(params=params),
        )
        return [_as_json(configuration) for configuration in listed.data]

    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, configuration_id: str, idempotency_key: str
    ) -> str:
        """The URL of a Stripe Billing Portal session for ``customer_id``, offering what
        ``configuration_id`` allows (without it, Stripe would use the account's default)."""
        params: stripe.params.billing_portal.SessionCreateParams = {
            "customer": customer_id,
            "return_url": return_url,
            "configuration": configuration_id,
        }
        session = self.call(
            "billing_portal.sessions.create",
            lambda: self.client.v1.billing_portal.sessions.create(
                params=params, options={"idempotency_key": idempotency_key}
            ),
        )
        return session.url

    # --- payments -----------------------------------------------------------------------

    def retrieve_payment(self, payment_intent: str) -> PaymentSnapshot:
        """The payment intent with its latest charge: what was paid, refunded, disputed."""
        params: stripe.params.PaymentIntentRetrieveParams = {"expand": ["latest_charge"]}
        intent = self.call(
            "payment_intents.retrieve",
            lambda: self.client.v1.payment_intents.retrieve(payment_intent, params=params),
        )
        charge = intent.latest_charge if isinstance(intent.latest_charge, stripe.Charge) else None
        metadata = intent.metadata
        member_id = metadata["member_id"] if metadata and "member_id" in metadata else None
        return PaymentSnapshot(
            id=intent.id,
            status=intent.status,
            amount=charge.amount if charge is not None else intent.amount_received,
            amount_refunded=charge.amount_refunded if charge is not None else 0,
            currency=intent.currency,
            disputed=bool(charge is not None and charge.disputed),
            member_id=str(member_id) if member_id else None,
        )

    # --- subscriptions ----------------------------------------------------------------------

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as Stripe holds it now, as the JSON an event would carry."""
        subscription = self.call(
            "subscriptions.retrieve",
            lambda: self.client.v1.subscriptions.retrieve(subscription_id),
        )
        current: dict[str, Any] = subscription.to_dict(recursive=True)
        return current

    def cancel_subscription_now(self, subscription_id: str, idempotency_key: str) -> None:
        """Cancel at once (no proration credit); a subscription already ended stays so."""
        current = self.call(
            "subscriptions.retrieve",
            lambda: self.client.v1.subscriptions.retrieve(subscription_id),
        )
        if current.status in ("canceled", "incomplete_expired"):
            return
        self.call(
            "subscriptions.cancel",
            lambda: self.client.v1.subscriptions.cancel(
                subscription_id, options={"idempotency_key": idempotency_key}
            ),
        )

    def invoice_payment_intent(self, invoice_id: str) -> str | None:
        """The payment intent that paid an invoice, if one did."""
        params: stripe.params.InvoiceRetrieveParams = {"expand": ["payments"]}
        invoice = self.call(
            "invoices.retrieve",
            lambda: self.client.v1.invoices.retrieve(invoice_id, params=params),
        )
        intents = [
            (payment.status == "paid", intent if isinstance(intent, str) else intent.id)
            for payment in (invoice.payments.data if invoice.payments else [])
            if (intent := payment.payment.payment_intent) is not None
        ]
        # The payment that succeeded, else the one still settling (its refund waits for it).
        return max(intents)[1] if intents else None

    # --- the reconciler's reads ------------------------------------------------------------

    def list_events(
        self, *, created_gte: int, created_lt: int, starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (newest first) of the events created in ``[created_gte, created_lt)``, as
        the JSON a webhook would carry, and whether more pages follow."""
        params: stripe.params.EventListParams = {
            "created": {"gte": created_gte, "lt": created_lt},
            "limit": 100,
        }
        if starting_after is not None:
            params["starting_after"] = starting_after
        page = self.call("events.list", lambda: self.client.v1.events.list(params=params))
        return [_as_json(event) for event in page.data], bool(page.has_more)

    @property
    def api_version(self) -> str:
        """The API version every call and the webhook endpoint are pinned to (the SDK's)."""
        return str(stripe.api_version)

    def retrieve_object(self, kind: str, object_id: str) -> dict[str, Any]:
        """An object an event may carry, as Stripe holds it now at the pinned API version (event
        JSON). ``kind`` is the object's ``object`` field with ``_`` for ``.``."""
        v1 = self.client.v1
        readers: dict[str, Callable[[], Any]] = {
            "checkout_session": lambda: v1.checkout.sessions.retrieve(object_id),
            "subscription": lambda: v1.subscriptions.retrieve(object_id),
            "refund": lambda: v1.refunds.retrieve(object_id),
            "payment_intent": lambda: v1.payment_intents.retrieve(object_id),
            "charge": lambda: v1.charges.retrieve(object_id),
            "dispute": lambda: v1.disputes.retrieve(object_id),
            "invoice": lambda: v1.invoices.retrieve(object_id),
        }
        return _as_json(self.call(f"{kind}.retrieve", readers[kind]))

    def raw(self) -> Any:
        """The underlying client, for adapters of later features that need more endpoints."""
        return self.client


@lru_cache(maxsize=1)
def _service(api_key: str, api_base: str | None, retry_base_seconds: float) -> StripeService:
    return StripeService(api_key, api_base=api_base, retry_base_seconds=retry_base_seconds)


def get_stripe(settings: Settings) -> StripeService:
    """The container's Stripe service: one client, one connection pool."""
    return _service(
        settings.value("stripe_secret_key"),
        settings.stripe_api_base,
        settings.stripe_retry_base_seconds,
    )


def _as_json(obj: stripe.StripeObject) -> dict[str, Any]:
    """The object as Stripe's JSON carries it (decimal fields as strings, as on the wire)."""
    plain: dict[str, Any] = json.loads(json.dumps(obj.to_dict(recursive=True), default=str))
    return plain


def _price(price: stripe.Price) -> StripePrice:
    return StripePrice(
        id=price.id,
        lookup_key=price.lookup_key,
        unit_amount=price.unit_amount,
        currency=price.currency,
        interval=price.recurring.interval if price.recurring else None,
        active=price.active,
    )


def _quote(value: str) -> str:
    # Stripe search strings are single-quoted; member ids never contain quotes, but a
    # forged one must not break out of the query.
    return value.replace("\\", "\\\\").replace("'", "\\'")
