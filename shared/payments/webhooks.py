"""What a Stripe event means to us, as the parameters of one SQL call.

Pure: no I/O and no SDK. ``parse_event`` checks that a queued message is a Stripe event;
``interpret_event`` turns it into an :class:`EventEffect`, the arguments of
``public.process_stripe_event`` (its current body: supabase/migrations/FUNCTIONS.md), which
claims the event id and applies the effect in one transaction. The payload is the object as it
was when the event was created; ordering and duplicates are the SQL function's business.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from payments.catalog import load_catalog
from payments.errors import InvalidRequest

Action = Literal[
    "checkout_session",
    "payment_intent",
    "refund",
    "charge_refunded",
    "dispute",
    "subscription",
    "invoice",
    "ignore",
    "refuse",
]

# Keys of metadata we copy into payment_logs: ids and product names only, never personal data.
_LOGGED_METADATA_KEYS = ("product", "switch_from")


class MalformedEvent(InvalidRequest):
    """A payload that is not a Stripe event: retrying it cannot help."""

    code = "malformed_event"


@dataclass(frozen=True)
class StripeEvent:
    """The envelope of a verified Stripe event; ``object`` is ``data.object``."""

    id: str
    type: str
    created: int
    object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] = field(default_factory=dict)
    # Whether Stripe sent it in live mode (None: the payload did not say).
    livemode: bool | None = None

    @property
    def created_at(self) -> str:
        return datetime.fromtimestamp(self.created, tz=UTC).isoformat()


@dataclass(frozen=True)
class EventEffect:
    """The arguments of ``process_stripe_event`` for one event, plus what to alert on."""

    event: StripeEvent
    action: Action
    object_id: str | None
    data: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)

    def batch_item(self) -> dict[str, Any]:
        """This event as one element of ``process_stripe_events``' array."""
        return {name.removeprefix("p_"): value for name, value in self.sql_params().items()}

    def sql_params(self) -> dict[str, Any]:
        return {
            "p_event_id": self.event.id,
            "p_event_type": self.event.type,
            "p_event_created": self.event.created_at,
            "p_object_id": self.object_id,
            "p_action": self.action,
            "p_data": self.data,
            "p_log": self.log,
        }


def parse_event(body: str | bytes) -> StripeEvent:
    """The Stripe event in ``body`` (JSON), or ``MalformedEvent`` naming what is wrong."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting too deep for json.loads; as malformed as invalid JSON.
        raise MalformedEvent("The payload is not JSON.") from None
    return event_from_dict(raw)


def event_from_dict(raw: object) -> StripeEvent:
    """Check the envelope of a decoded Stripe event (the fields every event has)."""
    if not isinstance(raw, dict) or raw.get("object") != "event":
        raise MalformedEvent("The payload is not a Stripe event.")
    event_id, event_type, created = raw.get("id"), raw.get("type"), raw.get("created")
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        raise MalformedEvent("The event has no valid id.")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("The event has no type.")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        raise MalformedEvent("The event has no valid created timestamp.")
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedEvent("The event has no data.object.")
    previous = data.get("previous_attributes") if isinstance(data, dict) else None
    livemode = raw.get("livemode")
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created,
        object=obj,
        previous_attributes=previous if isinstance(previous, dict) else {},
        livemode=livemode if isinstance(livemode, bool) else None,
    )


def interpret_event(event: StripeEvent, *, allow_repeat_purchases: bool = False) -> EventEffect:
    """The effect of ``event``; types we do not handle are acknowledged and ignored.

    Raises ``MalformedEvent`` for an event of a handled type that lacks what its type always
    carries (the object's id, a subscription's customer): applying it could only go wrong, and
    retrying it cannot help. ``allow_repeat_purchases`` lets a member pay again for a one-time
    track they hold (``ALLOW_REPEAT_PURCHASES``) instead of being refunded as a duplicate.
    """
    handler = _HANDLERS.get(event.type)
    if handler is None:
        return EventEffect(event, "ignore", _str(event.object.get("id")))
    if _str(event.object.get("id")) is None:
        raise MalformedEvent(f"A {event.type} event without data.object.id.")
    effect = handler(event)
    data = {**effect.data, "object_created": _timestamp(event.object.get("created"))}
    if effect.action in ("checkout_session", "payment_intent"):
        data["allow_repeat"] = allow_repeat_purchases
    return replace(effect, data=data)


def refused_effect(event: StripeEvent, reason: str) -> EventEffect:
    """What to record of an event the worker will never apply: claimed once as refused."""
    return EventEffect(event, "refuse", _str(event.object.get("id")), data={"reason": reason})


def is_handled(event_type: str) -> bool:
    return event_type in _HANDLERS


def handled_event_types() -> tuple[str, ...]:
    """Every event type the worker acts on: what a Stripe webhook endpoint must send."""
    return tuple(sorted(_HANDLERS))


# --- helpers ------------------------------------------------------------------------------


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _id(value: object) -> str | None:
    """An id whether the field holds the id or the expanded object."""
    if isinstance(value, Mapping):
        return _str(value.get("id"))
    return _str(value)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _timestamp(value: object) -> str | None:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat() if seconds else None


def _logged_metadata(obj: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    metadata = _metadata(obj)
    logged = {key: metadata[key] for key in _LOGGED_METADATA_KEYS if _str(metadata.get(key))}
    logged.update({key: value for key, value in extra.items() if value is not None})
    return logged


def _member_id(obj: Mapping[str, Any]) -> str | None:
    return _str(_metadata(obj).get("member_id"))


# --- checkout.session.* -------------------------------------------------------------------

_SESSION_TARGET = {
    "checkout.session.async_payment_succeeded": "paid",
    "checkout.session.async_payment_failed": "failed",
    "checkout.session.expired": "expired",
}


def _checkout_session(event: StripeEvent) -> EventEffect:
    session = event.object
    session_id = _str(session.get("id"))
    member_id = _member_id(session) or _str(session.get("client_reference_id"))
    customer = _id(session.get("customer"))
    payment_status = _str(session.get("payment_status"))
    amount, currency = _int(session.get("amount_total")), _str(session.get("currency"))
    mode = "subscription" if session.get("mode") == "subscription" else "payment"
    if event.type == "checkout.session.completed":
        # Delayed methods (bank debits) complete unpaid; the async_payment_* event settles it.
        target = "paid" if payment_status in ("paid", "no_payment_required") else "processing"
    else:
        target = _SESSION_TARGET[event.type]
    payment_intent = _id(session.get("payment_intent"))
    subscription = _id(session.get("subscription"))
    metadata = _metadata(session)
    return EventEffect(
        event,
        "checkout_session",
        session_id,
        data={
            "checkout_session_id": session_id,
            "mode": mode,
            "payment_intent": payment_intent,
            "subscription": subscription,
            "invoice": _id(session.get("invoice")),
            "member_id": member_id,
            "customer": customer,
            "product": _str(metadata.get("product")),
            "amount": amount,
            "currency": currency,
            "switch_from": _str(metadata.get("switch_from")),
            "target_status": target,
        },
        log={
            "user_id": member_id,
            "amount": amount,
            "currency": currency,
            "status": target,
            "customer": customer,
            "metadata": _logged_metadata(
                session, mode=mode, payment_intent=payment_intent, subscription=subscription
            ),
        },
    )


# --- payment_intent.* ---------------------------------------------------------------------


def _payment_intent(event: StripeEvent) -> EventEffect:
    intent = event.object
    intent_id = _str(intent.get("id"))
    succeeded = event.type == "payment_intent.succeeded"
    amount = _int(intent.get("amount_received")) if succeeded else None
    error = intent.get("last_payment_error")
    decline_code = _str(error.get("code")) if isinstance(error, Mapping) else None
    return EventEffect(
        event,
        "payment_intent",
        intent_id,
        data={
            "payment_intent": intent_id,
            "member_id": _member_id(intent),
            "target_status": "paid" if succeeded else "failed",
        },
        log={
            "user_id": _member_id(intent),
            "amount": amount if amount is not None else _int(intent.get("amount")),
            "currency": _str(intent.get("currency")),
            "status": _str(intent.get("status")),
            "customer": _id(intent.get("customer")),
            "metadata": _logged_metadata(intent, failure_code=decline_code),
        },
    )


# --- refunds ------------------------------------------------------------------------------


def _refund_row(refund: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": _str(refund.get("id")),
        "payment_intent": _id(refund.get("payment_intent")),
        "amount": _int(refund.get("amount")),
        "currency": _str(refund.get("currency")),
        "status": _str(refund.get("status")),
        "reason": _str(refund.get("reason")),
        "member_id": _member_id(refund),
    }


def _refund(event: StripeEvent) -> EventEffect:
    refund = event.object
    row = _refund_row(refund)
    return EventEffect(
        event,
        "refund",
        row["id"],
        data={"refund": row},
        log={
            "user_id": row["member_id"],
            "amount": row["amount"],
            "currency": row["currency"],
            "status": row["status"],
            "metadata": _logged_metadata(
                refund,
                payment_intent=row["payment_intent"],
                reason=row["reason"],
                failure_reason=_str(refund.get("failure_reason")),
            ),
        },
    )


def _charge_refunded(event: StripeEvent) -> EventEffect:
    charge = event.object
    listed = charge.get("refunds")
    refunds: list[dict[str, Any]] | None = None
    if isinstance(listed, Mapping) and isinstance(listed.get("data"), list):
        refunds = [_refund_row(r) for r in listed["data"] if isinstance(r, Mapping)]
        if listed.get("has_more"):
            # A partial list would understate the total; use the charge's own sum instead.
            refunds = None
    payment_intent = _id(charge.get("payment_intent"))
    amount_refunded = _int(charge.get("amount_refunded"))
    data: dict[str, Any] = {
        "charge": _str(charge.get("id")),
        "payment_intent": payment_intent,
        "amount_refunded": amount_refunded,
    }
    if refunds is not None:
        data["refunds"] = refunds
    return EventEffect(
        event,
        "charge_refunded",
        _str(charge.get("id")),
        data=data,
        log={
            "user_id": _member_id(charge),
            "amount": amount_refunded,
            "currency": _str(charge.get("currency")),
            "status": "refunded" if charge.get("refunded") else "partially_refunded",
            "customer": _id(charge.get("customer")),
            "metadata": _logged_metadata(
                charge, payment_intent=payment_intent, charge_amount=_int(charge.get("amount"))
            ),
        },
    )


# --- disputes -----------------------------------------------------------------------------


def _dispute(event: StripeEvent) -> EventEffect:
    dispute = event.object
    evidence = dispute.get("evidence_details")
    due_by = _int(evidence.get("due_by")) if isinstance(evidence, Mapping) else None
    payment_intent = _id(dispute.get("payment_intent"))
    dispute_id = _str(dispute.get("id"))
    data: dict[str, Any] = {
        "dispute_id": dispute_id,
        "charge": _id(dispute.get("charge")),
        "payment_intent": payment_intent,
        "amount": _int(dispute.get("amount")),
        "currency": _str(dispute.get("currency")),
        "status": _str(dispute.get("status")),
        "reason": _str(dispute.get("reason")),
        "evidence_due_by": _timestamp(due_by),
    }
    return EventEffect(
        event,
        "dispute",
        dispute_id,
        data=data,
        log={
            "amount": data["amount"],
            "currency": data["currency"],
            "status": data["status"],
            "metadata": _logged_metadata(
                dispute,
                payment_intent=payment_intent,
                charge=data["charge"],
                reason=data["reason"],
                evidence_due_by=data["evidence_due_by"],
            ),
        },
    )


# --- customer.subscription.* --------------------------------------------------------------


def _first_item(subscription: Mapping[str, Any]) -> Mapping[str, Any]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return data[0]
    return {}


def subscription_product(subscription: Mapping[str, Any]) -> str | None:
    """Our product id: the catalog entry of the price Stripe bills, else the metadata.

    The price wins: a plan changed in the Stripe Dashboard (or by any path that forgot the
    metadata) is still named by what the member actually pays for.
    """
    price = _first_item(subscription).get("price")
    lookup_key = _str(price.get("lookup_key")) if isinstance(price, Mapping) else None
    found = load_catalog().by_lookup_key(lookup_key) if lookup_key else None
    if found is not None:
        return found.id
    return _str(_metadata(subscription).get("product"))


def _subscription(event: StripeEvent) -> EventEffect:
    subscription = event.object
    item = _first_item(subscription)
    raw_price, raw_pause = item.get("price"), subscription.get("pause_collection")
    price: Mapping[str, Any] = raw_price if isinstance(raw_price, Mapping) else {}
    pause: Mapping[str, Any] = raw_pause if isinstance(raw_pause, Mapping) else {}
    # Stripe moved current_period_end onto the items (API 2025-03-31); read either place.
    period_end = _int(item.get("current_period_end")) or _int(
        subscription.get("current_period_end")
    )
    status = _str(subscription.get("status"))
    if event.type == "customer.subscription.deleted":
        status = "canceled"
    product = subscription_product(subscription)
    member_id = _member_id(subscription)
    customer = _id(subscription.get("customer"))
    if customer is None:
        raise MalformedEvent(f"A {event.type} event whose subscription has no customer.")
    quantity = _int(item.get("quantity")) or 1
    unit_amount = _int(price.get("unit_amount"))
    return EventEffect(
        event,
        "subscription",
        _str(subscription.get("id")),
        data={
            "subscription_id": _str(subscription.get("id")),
            "customer": customer,
            "member_id": member_id,
            "product": product,
            "price_id": _str(price.get("id")),
            "status": status,
            "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
            "pause_behavior": _str(pause.get("behavior")),
            "resumes_at": _timestamp(pause.get("resumes_at")),
            "current_period_end": _timestamp(period_end),
        },
        log={
            "user_id": member_id,
            "amount": unit_amount * quantity if unit_amount is not None else None,
            "currency": _str(price.get("currency")) or _str(subscription.get("currency")),
            "status": status,
            "customer": customer,
            "metadata": _logged_metadata(
                subscription,
                product=product,
                price_id=_str(price.get("id")),
                cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
            ),
        },
    )


# --- invoice.* ----------------------------------------------------------------------------


def invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills (``parent.subscription_details`` since 2025-03-31)."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    if isinstance(details, Mapping) and _id(details.get("subscription")):
        return _id(details.get("subscription"))
    return _id(invoice.get("subscription"))


def _invoice_member(invoice: Mapping[str, Any]) -> str | None:
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    metadata = details.get("metadata") if isinstance(details, Mapping) else None
    if isinstance(metadata, Mapping) and _str(metadata.get("member_id")):
        return _str(metadata.get("member_id"))
    return _member_id(invoice)


def _invoice_payment_intent(invoice: Mapping[str, Any]) -> str | None:
    """The payment intent that paid the invoice, when the payload lists its payments."""
    payments = invoice.get("payments")
    data = payments.get("data") if isinstance(payments, Mapping) else None
    for entry in data if isinstance(data, list) else []:
        payment = entry.get("payment") if isinstance(entry, Mapping) else None
        if isinstance(payment, Mapping) and _id(payment.get("payment_intent")):
            return _id(payment.get("payment_intent"))
    return None


def _invoice(event: StripeEvent) -> EventEffect:
    """invoice.paid / invoice.payment_failed of a subscription: a renewal, or a failed one.

    The plan is named by the subscription (re-read from Stripe by the worker, which also brings
    its status, ``past_due`` after a failed renewal) or by our subscriptions table.
    """
    invoice = event.object
    invoice_id = _str(invoice.get("id"))
    subscription = invoice_subscription(invoice)
    failed = event.type == "invoice.payment_failed"
    amount_paid, amount_due = _int(invoice.get("amount_paid")), _int(invoice.get("amount_due"))
    currency, customer = _str(invoice.get("currency")), _id(invoice.get("customer"))
    member_id = _invoice_member(invoice)
    data: dict[str, Any] = {
        "invoice_id": invoice_id,
        "subscription_id": subscription,
        "customer": customer,
        "member_id": member_id,
        "payment_intent": _invoice_payment_intent(invoice),
        "amount_due": amount_due,
        "amount_paid": amount_paid,
        "currency": currency,
        "status": _str(invoice.get("status")),
        "billing_reason": _str(invoice.get("billing_reason")),
        "attempt_count": _int(invoice.get("attempt_count")),
        "next_payment_attempt": _timestamp(invoice.get("next_payment_attempt")),
    }
    return EventEffect(
        event,
        "invoice",
        invoice_id,
        data=data,
        log={
            "user_id": member_id,
            "amount": amount_due if failed else amount_paid,
            "currency": currency,
            "status": "payment_failed" if failed else "paid",
            "customer": customer,
            "metadata": _logged_metadata(
                invoice,
                subscription=subscription,
                billing_reason=data["billing_reason"],
                attempt_count=data["attempt_count"] if failed else None,
            ),
        },
    )


def with_subscription_state(effect: EventEffect, subscription: Mapping[str, Any]) -> EventEffect:
    """An invoice effect that also applies its subscription as Stripe holds it now (a failed
    renewal moves it to ``past_due``), and names the plan by the subscription's price."""
    state = _subscription(replace(effect.event, object=subscription)).data
    product = state.get("product")
    created = _timestamp(subscription.get("created"))
    data = {**effect.data, "subscription_state": {**state, "object_created": created}}
    if product:
        data["product"] = product
    log = dict(effect.log)
    if product:
        log["metadata"] = {**log.get("metadata", {}), "product": product}
    return replace(effect, data=data, log=log)


_HANDLERS: dict[str, Callable[[StripeEvent], EventEffect]] = {
    "checkout.session.completed": _checkout_session,
    "checkout.session.async_payment_succeeded": _checkout_session,
    "checkout.session.async_payment_failed": _checkout_session,
    "checkout.session.expired": _checkout_session,
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "charge.refunded": _charge_refunded,
    "refund.created": _refund,
    "refund.updated": _refund,
    "refund.failed": _refund,
    "charge.refund.updated": _refund,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.funds_withdrawn": _dispute,
    "charge.dispute.funds_reinstated": _dispute,
    "charge.dispute.closed": _dispute,
    "customer.subscription.created": _subscription,
    "customer.subscription.updated": _subscription,
    "customer.subscription.deleted": _subscription,
    "customer.subscription.paused": _subscription,
    "customer.subscription.resumed": _subscription,
    "invoice.paid": _invoice,
    "invoice.payment_failed": _invoice,
}
