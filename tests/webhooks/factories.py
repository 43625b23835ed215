"""Stripe events for tests, shaped as the pinned API version (2026-10-28.endive) sends them.

Each object starts from the example the emulator ships (Stripe's published fixture, brought to
the pinned version by ``tools/stripe_emulator/fixtures/endive.json``) with only the fields a
scenario needs overridden; ``tests/webhooks/test_charge_refunded_shapes.py`` checks that what
they build by default matches the pinned version's definitions."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from tools.stripe_emulator.objects import API_VERSION, fixture

WEBHOOK_SECRET = "whsec_test_webhook_pipeline"
PREVIOUS_SECRET = "whsec_test_previous_secret"
MEMBER = "mem_sb_buyer01"


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int | None = None,
    event_id: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe event envelope (from the ``event`` fixture) carrying ``obj``."""
    envelope = fixture("event")
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    envelope.update(
        id=event_id or new_id("evt_"),
        type=event_type,
        created=created if created is not None else int(time.time()),
        api_version=API_VERSION,
        livemode=False,
        pending_webhooks=1,
        data=data,
    )
    return envelope


def checkout_session(
    *,
    product: str = "business_plan_builder",
    amount: int = 9900,
    member_id: str | None = MEMBER,
    payment_status: str = "paid",
    status: str = "complete",
    mode: str = "payment",
    switch_from: str | None = None,
    customer: str | None = None,
) -> dict[str, Any]:
    session = fixture("checkout.session")
    metadata = {"product": product}
    if member_id:
        metadata["member_id"] = member_id
    if switch_from:
        metadata["switch_from"] = switch_from
    session.update(
        id=new_id("cs_test_a1"),
        payment_intent=new_id("pi_") if mode == "payment" else None,
        subscription=new_id("sub_") if mode == "subscription" else None,
        amount_total=amount,
        amount_subtotal=amount,
        currency="usd",
        customer=customer or new_id("cus_"),
        client_reference_id=member_id,
        metadata=metadata,
        payment_status=payment_status,
        status=status,
        mode=mode,
        shipping_cost=None,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
    )
    # The fixture's customer e-mail stays: it must never reach payment_logs.
    return session


def payment_intent(
    intent_id: str, *, amount: int = 9900, status: str = "succeeded", member_id: str | None = None
) -> dict[str, Any]:
    intent = fixture("payment_intent")
    intent.update(
        id=intent_id,
        amount=amount,
        amount_received=amount if status == "succeeded" else 0,
        currency="usd",
        status=status,
        metadata={"member_id": member_id} if member_id else {},
        canceled_at=None,
    )
    if status != "succeeded":
        intent["last_payment_error"] = {"code": "card_declined", "type": "card_error"}
    return intent


def refund(
    payment_intent_id: str,
    *,
    amount: int,
    status: str = "succeeded",
    refund_id: str | None = None,
    reason: str | None = "requested_by_customer",
) -> dict[str, Any]:
    obj = fixture("refund")
    obj.update(
        id=refund_id or new_id("re_"),
        amount=amount,
        payment_intent=payment_intent_id,
        charge=new_id("ch_"),
        currency="usd",
        status=status,
        reason=reason,
    )
    return obj


def charge(
    payment_intent_id: str,
    *,
    amount: int = 9900,
    amount_refunded: int | None = None,
    refunds: list[dict[str, Any]] | None = None,
    refunds_has_more: bool = False,
) -> dict[str, Any]:
    """A charge as ``charge.*`` events carry it: ``amount_refunded`` and no refunds list, since
    Stripe includes ``refunds`` only when a request expands it. ``refunds`` builds that
    expanded shape instead (a charge fetched with ``expand[]=refunds``), its
    ``amount_refunded`` the listed refunds' sum unless given."""
    obj = fixture("charge")
    if amount_refunded is None:
        listed = refunds or []
        amount_refunded = sum(
            r["amount"] for r in listed if r["status"] in ("pending", "succeeded")
        )
    obj.update(
        id=new_id("ch_"),
        amount=amount,
        amount_captured=amount,
        amount_refunded=amount_refunded,
        refunded=amount_refunded >= amount,
        captured=True,
        payment_intent=payment_intent_id,
        currency="usd",
    )
    if refunds is not None:
        obj["refunds"] = {
            "object": "list",
            "data": refunds,
            "has_more": refunds_has_more,
            "url": f"/v1/charges/{obj['id']}/refunds",
        }
    return obj


def dispute(
    payment_intent_id: str, *, amount: int = 9900, status: str = "needs_response", due_by: int
) -> dict[str, Any]:
    obj = fixture("dispute")
    obj.update(
        id=new_id("dp_"),
        amount=amount,
        payment_intent=payment_intent_id,
        charge=new_id("ch_"),
        currency="usd",
        status=status,
        reason="fraudulent",
    )
    obj["evidence_details"]["due_by"] = due_by
    return obj


def subscription(
    *,
    subscription_id: str | None = None,
    customer: str | None = None,
    status: str = "active",
    lookup_key: str | None = "growth_monthly_usd_v1",
    member_id: str | None = None,
    unit_amount: int = 2900,
    cancel_at_period_end: bool = False,
    period_end: int | None = None,
) -> dict[str, Any]:
    obj = fixture("subscription")
    sub_id = subscription_id or new_id("sub_")
    item = obj["items"]["data"][0]
    item["price"].update(
        id=new_id("price_"), lookup_key=lookup_key, unit_amount=unit_amount, currency="usd"
    )
    item.update(subscription=sub_id, current_period_end=period_end or int(time.time()) + 30 * 86400)
    obj.update(
        id=sub_id,
        customer=customer or new_id("cus_"),
        status=status,
        metadata={"member_id": member_id} if member_id else {},
        cancel_at_period_end=cancel_at_period_end,
        pause_collection=None,
    )
    return obj


def payload(stripe_event: dict[str, Any]) -> str:
    """The body as Stripe sends it (pretty-printed); the signature covers these bytes."""
    return json.dumps(stripe_event, indent=2)


def sign(body: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A real ``Stripe-Signature`` header: ``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def invoice(
    subscription_id: str,
    *,
    customer: str,
    amount: int = 2900,
    paid: bool = True,
    billing_reason: str = "subscription_cycle",
    attempt_count: int = 1,
    member_id: str | None = None,
) -> dict[str, Any]:
    """A subscription's invoice as ``invoice.paid`` / ``invoice.payment_failed`` carry it: the
    subscription under ``parent.subscription_details`` (no top-level ``subscription`` since
    2025-03-31)."""
    obj = fixture("invoice")
    obj.pop("subscription", None)
    obj.update(
        id=new_id("in_"),
        customer=customer,
        currency="usd",
        amount_due=amount,
        amount_paid=amount if paid else 0,
        amount_remaining=0 if paid else amount,
        status="paid" if paid else "open",
        billing_reason=billing_reason,
        attempt_count=attempt_count,
        next_payment_attempt=None if paid else int(time.time()) + 3 * 86400,
        parent={
            "quote_details": None,
            "subscription_details": {
                "metadata": {"member_id": member_id} if member_id else {},
                "subscription": subscription_id,
            },
            "type": "subscription_details",
        },
    )
    return obj
