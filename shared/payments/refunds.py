"""Refunds (admin) and product switches (member).

Rules that protect money:

* Never refund more than was paid. What is still refundable is the amount paid minus every
  refund Stripe accepted or may still complete, minus reservations of requests in flight, and
  never more than Stripe itself says is left (our tables may lag behind Stripe).
* Never refund twice for one request. The amount is reserved in SQL under a lock on the
  purchase (``reserve_refund``) before Stripe is called, and the Stripe call carries an
  idempotency key derived from the request, so a retried or concurrent request either replays
  the same refund or is refused. A request is the client's ``Idempotency-Key`` when sent;
  without one, the same admin asking for the same refund (payment, amount or "the rest",
  reason) within ten minutes is the same request and gets the same refund back.
* A switch refunds nothing by itself: it starts a Checkout for the new track; the webhook
  worker refunds the original only once that new payment succeeded (outbox ``switch_refund``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import ConfigDict, Field

from payments import errors
from payments.adapters.store import Store
from payments.auth import Member
from payments.catalog import format_amount
from payments.checkout import CheckoutDeps, start_checkout
from payments.models import CheckoutSession, IssuedRefund, PaymentSnapshot
from payments.observability import logger
from payments.refund_records import (
    PAYMENT_INTENT_PATTERN,
    RESERVATION_TTL_SECONDS,
    RefundOut,
    RefundRecord,
)
from payments.schema import Model

RefundReason = Literal["requested_by_customer", "duplicate", "fraudulent"]

MAX_NOTE_LENGTH = 500  # Stripe's limit for one metadata value
MAX_CLIENT_KEY_LENGTH = 200
# Stripe's largest amount in cents; anything above cannot be a refund of ours.
MAX_AMOUNT = 99_999_999


# --- errors -------------------------------------------------------------------------------


class PaymentNotFound(errors.NotFound):
    code = "payment_not_found"
    default_message = "No payment with this id."


class RefundAmountInvalid(errors.Unprocessable):
    code = "refund_amount_invalid"
    default_message = "The refund amount must be a positive number of cents."


class RefundExceedsRefundable(errors.Unprocessable):
    code = "refund_exceeds_refundable"
    default_message = "The amount is more than what is left to refund."


class AlreadyFullyRefunded(errors.Conflict):
    code = "already_fully_refunded"
    default_message = "This payment has already been fully refunded."


class PaymentDisputed(errors.Conflict):
    code = "payment_disputed"
    default_message = "This payment is disputed; answer the dispute instead of refunding."


class PaymentNotRefundable(errors.Conflict):
    code = "payment_not_refundable"
    default_message = "This payment has not succeeded; there is nothing to refund."


class IdempotencyKeyReused(errors.Conflict):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used for a different refund."


class SameProduct(errors.Conflict):
    code = "same_product"
    default_message = "You already own this track. Choose another one to switch to."


class PurchaseNotSwitchable(errors.Conflict):
    code = "purchase_not_switchable"
    default_message = "Only a paid purchase that was not refunded or disputed can be switched."


# --- HTTP models --------------------------------------------------------------------------

PaymentIntentId = Annotated[
    str, Field(pattern=PAYMENT_INTENT_PATTERN, description="A Stripe payment intent id")
]


class RefundRequest(Model):
    model_config = ConfigDict(extra="forbid")

    payment_intent: PaymentIntentId
    amount: Annotated[
        int | None,
        Field(
            strict=True,
            le=MAX_AMOUNT,
            description="Cents to refund; absent: everything still refundable.",
        ),
    ] = None
    reason: RefundReason
    note: Annotated[
        str | None,
        Field(max_length=MAX_NOTE_LENGTH, description="Why, for the audit trail."),
    ] = None


class RefundHistory(Model):
    payment_intent: str
    refunds: list[RefundRecord]


class SwitchRequest(Model):
    model_config = ConfigDict(extra="forbid")

    payment_intent: PaymentIntentId
    product: Annotated[
        str, Field(min_length=1, max_length=64, description="The one-time track to switch to")
    ]


# --- ports --------------------------------------------------------------------------------


class PaymentGateway(Protocol):
    def retrieve_payment(self, payment_intent: str) -> PaymentSnapshot: ...

    def create_refund(
        self,
        payment_intent: str,
        *,
        idempotency_key: str,
        amount: int | None = None,
        reason: RefundReason | None = None,
        metadata: dict[str, str] | None = None,
    ) -> IssuedRefund: ...


@dataclass(frozen=True)
class RefundDeps:
    store: Store
    payments: PaymentGateway


@dataclass(frozen=True)
class SwitchDeps:
    checkout: CheckoutDeps
    payments: PaymentGateway


# --- refunds ------------------------------------------------------------------------------


def client_key_digest(client_key: str | None) -> str | None:
    """The client's Idempotency-Key as a fixed-size digest (never stored as sent)."""
    if client_key is None:
        return None
    client_key = client_key.strip()
    if not client_key or len(client_key) > MAX_CLIENT_KEY_LENGTH or not client_key.isprintable():
        raise errors.InvalidRequest(
            "The Idempotency-Key header must be 1 to 200 printable characters.",
            code="invalid_idempotency_key",
        )
    return hashlib.sha256(client_key.encode()).hexdigest()[:48]


def _refusal(result: dict[str, Any]) -> errors.PaymentsError:
    reason = result.get("reason")
    if reason == "not_found":
        return PaymentNotFound()
    if reason == "disputed":
        return PaymentDisputed()
    if reason == "not_paid":
        return PaymentNotRefundable()
    if reason == "fully_refunded":
        return AlreadyFullyRefunded()
    if reason == "key_reused":
        return IdempotencyKeyReused()
    refundable = int(result.get("refundable") or 0)
    currency = str(result.get("currency") or "usd")
    return RefundExceedsRefundable(
        f"The amount is more than what is left to refund "
        f"({refundable} cents, {format_amount(refundable, currency)})."
    )


def _stripe_said_no(exc: errors.PaymentsError) -> bool:
    """Whether Stripe answered that it made no refund, as opposed to an outcome we do not
    know (timeout, 5xx, the same key still in flight), after which the reservation must stay
    until a retry replays the key or the reservation expires."""
    if isinstance(exc, errors.UpstreamError | errors.UpstreamUnavailable):
        return False
    return exc.code != "idempotency_conflict"


def request_refund(
    deps: RefundDeps, admin: Member, request: RefundRequest, client_key: str | None = None
) -> RefundOut:
    """Refund a payment (all of what is left when no amount is given), at most once per
    request. The caller has checked that ``admin`` is an administrator."""
    if request.amount is not None and request.amount <= 0:
        raise RefundAmountInvalid()
    digest = client_key_digest(client_key)
    pi = request.payment_intent
    purchase = deps.store.call("purchase_by_payment_intent", p_payment_intent=pi)
    if purchase is None:
        raise PaymentNotFound()
    snapshot = deps.payments.retrieve_payment(pi)
    if snapshot.status != "succeeded":
        raise PaymentNotRefundable()
    result = deps.store.call(
        "reserve_refund",
        p_payment_intent=pi,
        p_amount=request.amount,
        p_reason=request.reason,
        p_requested_by=admin.id,
        p_note=request.note,
        p_client_key=digest,
        p_stripe_amount_refunded=snapshot.amount_refunded,
        p_stripe_disputed=snapshot.disputed,
        p_reservation_ttl_seconds=RESERVATION_TTL_SECONDS,
    )
    outcome = result["outcome"]
    if outcome == "refused":
        raise _refusal({**result, "currency": purchase.get("currency")})
    if outcome == "replayed":
        return RefundOut.model_validate(result["refund"])
    return _issue(deps, admin, request, result)


def _issue(
    deps: RefundDeps, admin: Member, request: RefundRequest, reservation: dict[str, Any]
) -> RefundOut:
    reservation_id = str(reservation["reservation_id"])
    # A retry reuses the reservation of the first attempt and must send Stripe exactly what
    # that attempt sent (same key, same parameters), or Stripe refuses the key.
    metadata = {"requested_by": str(reservation["requested_by"]), "source": "admin_api"}
    if reservation.get("note"):
        metadata["note"] = str(reservation["note"])
    reason: RefundReason = reservation.get("reason") or request.reason
    try:
        issued = deps.payments.create_refund(
            request.payment_intent,
            idempotency_key=str(reservation["idempotency_key"]),
            amount=int(reservation["amount"]),
            reason=reason,
            metadata=metadata,
        )
    except errors.PaymentsError as exc:
        if _stripe_said_no(exc):
            deps.store.call(
                "release_refund", p_reservation_id=reservation_id, p_error_code=exc.code
            )
        logger.warning(
            "refund not created",
            extra={
                "payment_intent": request.payment_intent,
                "requested_by": admin.id,
                "code": exc.code,
                "reservation_kept": not _stripe_said_no(exc),
            },
        )
        raise
    confirmed = deps.store.call(
        "confirm_refund",
        p_reservation_id=reservation_id,
        p_refund_id=issued.id,
        p_status=issued.status,
        p_amount=issued.amount,
        p_currency=issued.currency,
    )
    refund = RefundOut.model_validate(confirmed)
    logger.info(
        "refund created",
        extra={
            "payment_intent": refund.payment_intent,
            "refund_id": refund.id,
            "amount": refund.amount,
            "refund_status": refund.status,
            "reason": request.reason,
            "requested_by": admin.id,
        },
    )
    return refund


def refund_history(store: Store, payment_intent: str) -> RefundHistory:
    """Every refund of a payment, newest first, with who asked and why."""
    rows = store.call("payment_refunds", p_payment_intent=payment_intent)
    if rows is None:
        raise PaymentNotFound()
    return RefundHistory(
        payment_intent=payment_intent,
        refunds=[RefundRecord.model_validate(row) for row in rows],
    )


# --- product switch -----------------------------------------------------------------------


def switch_purchase(
    deps: SwitchDeps, member: Member, request: SwitchRequest, client_key: str | None = None
) -> CheckoutSession:
    """Start the Checkout that replaces the member's purchase with another one-time track.

    Nothing is refunded here: when the new session is paid, the webhook worker refunds the
    original in full (``switch_refund``), once. A member who never pays keeps the original.
    """
    target = deps.checkout.catalog.get(request.product, mode="payment")
    pi = request.payment_intent
    store = deps.checkout.store
    purchase = store.call("purchase_by_payment_intent", p_payment_intent=pi)
    # Someone else's payment answers exactly like an unknown one: its existence is private.
    if purchase is None or purchase.get("member_id") != member.id:
        raise PaymentNotFound()
    if purchase["product"] == target.id:
        raise SameProduct()
    if purchase["status"] != "paid" or int(purchase["amount_refunded"]) > 0:
        raise PurchaseNotSwitchable()
    snapshot = deps.payments.retrieve_payment(pi)
    if snapshot.status != "succeeded" or snapshot.disputed or snapshot.amount_refunded > 0:
        raise PurchaseNotSwitchable()
    session = start_checkout(
        deps.checkout,
        member,
        target.id,
        client_key=client_key,
        switch_from=pi,
        extra_metadata={"switch_from": pi},
    )
    store.call(
        "log_payment",
        p_event_type="purchase.switch_requested",
        p_user_id=member.id,
        p_amount=target.amount,
        p_currency=target.currency,
        p_status="open",
        p_stripe_object_id=session.id,
        p_metadata={"switch_from": pi, "from_product": purchase["product"], "product": target.id},
    )
    logger.info(
        "product switch started",
        extra={"member_id": member.id, "switch_from": pi, "product": target.id},
    )
    return session
