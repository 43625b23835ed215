"""Builders for Stripe objects, each starting from Stripe's published example (fixture).

Every builder deep-copies the fixture of its resource (``fixtures/fixtures3.json``, brought to
the pinned version by ``fixtures/endive.json``), then overrides what the emulator manages: ids
with the right prefix, amounts, status, metadata, ``livemode: false`` (on the objects that have
it) and ``created``. Fields the fixture fills with placeholder data that would mislead a client
(a discount on a new customer, a transfer destination, shipping costs) are reset to what a
freshly created object of that kind has in test mode. ``tests/emulator/test_conformance.py``
checks every object built here against the pinned version's definitions.
"""

from __future__ import annotations

import copy
import functools
import json
import secrets
from pathlib import Path
from typing import Any

from tools.stripe_emulator.state import RequestInfo, Store, new_id

API_VERSION = "2026-10-28.endive"
FIXTURES_PATH = Path(__file__).parent / "fixtures" / "fixtures3.json"
VERSION_OVERLAY_PATH = Path(__file__).parent / "fixtures" / "endive.json"

# Currencies whose amounts have no minor unit (Stripe's list).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}


@functools.cache
def _resources() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURES_PATH.read_text(encoding="utf-8"))["resources"]
    overlay = json.loads(VERSION_OVERLAY_PATH.read_text(encoding="utf-8"))["resources"]
    for name, change in overlay.items():
        apply_overlay(data[name], change)
    return data


def _walk(obj: Any, parts: list[str]) -> Any:
    for part in parts:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def apply_overlay(obj: dict[str, Any], change: dict[str, Any]) -> None:
    """Apply one resource's entry of ``fixtures/endive.json``: ``set`` dotted paths to values,
    ``remove`` dotted paths. A path whose parent is missing is an error, not a silent no-op."""
    for path, value in change.get("set", {}).items():
        *parents, leaf = path.split(".")
        _walk(obj, parents)[leaf] = copy.deepcopy(value)
    for path in change.get("remove", []):
        *parents, leaf = path.split(".")
        del _walk(obj, parents)[leaf]


def fixture(name: str) -> dict[str, Any]:
    """A fresh deep copy of Stripe's example object for resource ``name``."""
    return copy.deepcopy(_resources()[name])


def format_amount(amount: int, currency: str) -> str:
    """Format minor units for people: ``format_amount(9900, "usd") == "$99.00"``."""
    currency = currency.lower()
    symbol = _SYMBOLS.get(currency, currency.upper() + " ")
    sign = "-" if amount < 0 else ""
    if currency in ZERO_DECIMAL:
        return f"{sign}{symbol}{abs(amount):,}"
    return f"{sign}{symbol}{abs(amount) / 100:,.2f}"


def _base(store: Store, resource: str, prefix: str, /, **overrides: Any) -> dict[str, Any]:
    obj = fixture(resource)
    obj["id"] = new_id(prefix) if prefix else obj.get("id")
    if "livemode" in obj:  # refunds and subscription items have none
        obj["livemode"] = False
    if "created" in obj:
        obj["created"] = store.now()
    if "metadata" in obj:
        obj["metadata"] = {}
    obj.update(overrides)
    return obj


def product(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """A product from ``ProductCreateParams``."""
    obj = _base(
        store,
        "product",
        "prod_",
        name=params["name"],
        description=params.get("description"),
        active=params.get("active", True),
        metadata=dict(params.get("metadata") or {}),
        default_price=None,
        images=list(params.get("images") or []),
        package_dimensions=None,
        shippable=params.get("shippable"),
        statement_descriptor=params.get("statement_descriptor"),
        unit_label=params.get("unit_label"),
        url=params.get("url"),
        tax_code=params.get("tax_code"),
        type="service",
    )
    if params.get("id"):
        obj["id"] = params["id"]
    obj["updated"] = obj["created"]
    return obj


def price(store: Store, params: dict[str, Any], product_id: str) -> dict[str, Any]:
    """A price from ``PriceCreateParams`` (or a line item's ``price_data``)."""
    recurring = params.get("recurring")
    unit_amount = params.get("unit_amount")
    if unit_amount is None and params.get("unit_amount_decimal") is not None:
        unit_amount = int(float(params["unit_amount_decimal"]))
    obj = _base(
        store,
        "price",
        "price_",
        active=params.get("active", True),
        currency=params["currency"].lower(),
        custom_unit_amount=None,
        lookup_key=params.get("lookup_key"),
        metadata=dict(params.get("metadata") or {}),
        nickname=params.get("nickname"),
        product=product_id,
        tax_behavior=params.get("tax_behavior", "unspecified"),
        transform_quantity=None,
        unit_amount=unit_amount,
        unit_amount_decimal=None if unit_amount is None else str(unit_amount),
    )
    if recurring:
        obj["recurring"] = {
            "interval": recurring["interval"],
            "interval_count": recurring.get("interval_count", 1),
            "meter": None,
            "usage_type": recurring.get("usage_type", "licensed"),
            "trial_period_days": recurring.get("trial_period_days"),
        }
        obj["type"] = "recurring"
    else:
        obj["recurring"] = None
        obj["type"] = "one_time"
    return obj


def plan_from_price(price_obj: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` view of a recurring price, as subscription items still carry it."""
    recurring = price_obj.get("recurring") or {}
    return {
        "active": price_obj["active"],
        "amount": price_obj["unit_amount"],
        "amount_decimal": price_obj["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": price_obj["created"],
        "currency": price_obj["currency"],
        "id": price_obj["id"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": dict(price_obj["metadata"]),
        "meter": None,
        "nickname": price_obj["nickname"],
        "object": "plan",
        "product": price_obj["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def customer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """A customer from ``CustomerCreateParams``."""
    return _base(
        store,
        "customer",
        "cus_",
        address=params.get("address"),
        currency=None,
        description=params.get("description"),
        discount=None,
        email=params.get("email"),
        invoice_prefix=secrets.token_hex(4).upper(),
        metadata=dict(params.get("metadata") or {}),
        name=params.get("name"),
        phone=params.get("phone"),
        preferred_locales=list(params.get("preferred_locales") or []),
        shipping=params.get("shipping"),
    )


def checkout_line_item(
    price_obj: dict[str, Any], product_obj: dict[str, Any] | None, quantity: int
) -> dict[str, Any]:
    """A Checkout Session line item (``item`` object)."""
    obj = fixture("item")
    amount = (price_obj["unit_amount"] or 0) * quantity
    obj.update(
        id=new_id("li_"),
        amount_discount=0,
        amount_subtotal=amount,
        amount_tax=0,
        amount_total=amount,
        currency=price_obj["currency"],
        description=product_obj["name"] if product_obj else None,
        price=copy.deepcopy(price_obj),
        quantity=quantity,
        adjustable_quantity=None,
        metadata={},
    )
    return obj


def checkout_session(store: Store, fields: dict[str, Any]) -> dict[str, Any]:
    """A new, open Checkout Session; ``fields`` holds the values computed from the request."""
    obj = _base(
        store,
        "checkout.session",
        "cs_test_",
        after_expiration=None,
        automatic_tax={"enabled": False, "liability": None, "provider": None, "status": None},
        client_secret=None,
        consent=None,
        consent_collection=None,
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        customer_details=None,
        collected_information=None,
        currency_conversion=None,
        invoice=None,
        payment_intent=None,
        payment_method_configuration_details=None,
        payment_status="unpaid",
        permissions=None,
        shipping_address_collection=None,
        shipping_cost=None,
        status="open",
        subscription=None,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        wallet_options=None,
        managed_payments=None,
        adaptive_pricing={"enabled": False},
    )
    obj.update(fields)
    return obj


def payment_intent(
    store: Store,
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    metadata: dict[str, str],
    description: str | None = None,
    receipt_email: str | None = None,
) -> dict[str, Any]:
    """A payment intent waiting for a payment method."""
    obj = _base(
        store,
        "payment_intent",
        "pi_",
        amount=amount,
        amount_capturable=0,
        amount_details={"tip": {}},
        amount_received=0,
        automatic_payment_methods=None,
        canceled_at=None,
        currency=currency,
        customer=customer_id,
        description=description,
        last_payment_error=None,
        latest_charge=None,
        metadata=dict(metadata),
        next_action=None,
        payment_method=None,
        payment_method_configuration_details=None,
        payment_method_types=["card"],
        processing=None,
        receipt_email=receipt_email,
        shipping=None,
        status="requires_payment_method",
        transfer_data=None,
        managed_payments=None,
    )
    obj["client_secret"] = f"{obj['id']}_secret_{secrets.token_urlsafe(18)}"
    return obj


def card_details(last4: str, brand: str = "visa") -> dict[str, Any]:
    """``payment_method_details`` for a test card."""
    details = fixture("charge")["payment_method_details"]
    details["card"].update(
        brand=brand,
        last4=last4,
        exp_month=12,
        exp_year=2034,
        fingerprint=secrets.token_urlsafe(12)[:16],
        network=brand,
        wallet=None,
    )
    return dict(details)


def payment_method(
    store: Store,
    *,
    details: dict[str, Any],
    email: str | None,
    name: str | None,
    customer_id: str | None,
) -> dict[str, Any]:
    """The payment method a payment attempt used (``last_payment_error.payment_method``), a
    card or a bank account after the charge's ``payment_method_details``."""
    obj = _base(
        store,
        "payment_method",
        "pm_",
        allow_redisplay="unspecified",
        billing_details={
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": email,
            "name": name,
            "phone": None,
            "tax_id": None,
        },
        customer=customer_id,
    )
    if details["type"] == "us_bank_account":
        bank = details["us_bank_account"]
        del obj["card"]
        obj["type"] = "us_bank_account"
        obj["us_bank_account"] = {
            "account_holder_type": bank["account_holder_type"],
            "account_type": bank["account_type"],
            "bank_name": bank["bank_name"],
            "financial_connections_account": None,
            "fingerprint": bank["fingerprint"],
            "last4": bank["last4"],
            "networks": {"preferred": "ach", "supported": ["ach"]},
            "routing_number": bank["routing_number"],
            "status_details": None,
        }
        return obj
    card = details["card"]
    obj["card"].update(
        brand=card["brand"],
        exp_month=card["exp_month"],
        exp_year=card["exp_year"],
        fingerprint=card["fingerprint"],
        last4=card["last4"],
        wallet=None,
    )
    obj["card"]["generated_from"] = None
    return obj


def balance_transaction(
    store: Store,
    *,
    amount: int,
    currency: str,
    source: str,
    type: str,
    reporting_category: str,
    description: str,
    fee: int = 0,
    fee_description: str | None = None,
) -> dict[str, Any]:
    """A balance transaction (pending, available in two days), as disputes embed them."""
    fee_details = []
    if fee:
        fee_details.append(
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": fee_description,
                "type": "stripe_fee",
            }
        )
    return _base(
        store,
        "balance_transaction",
        "txn_",
        amount=amount,
        available_on=store.now() + 2 * 86400,
        balance_type="payments",
        currency=currency,
        description=description,
        exchange_rate=None,
        fee=fee,
        fee_details=fee_details,
        net=amount - fee,
        reporting_category=reporting_category,
        source=source,
        status="pending",
        type=type,
    )


def invoice_payment(
    store: Store, invoice_obj: dict[str, Any], intent: dict[str, Any]
) -> dict[str, Any]:
    """The payment of an invoice by a payment intent (``invoice.payments``)."""
    paid = intent["status"] == "succeeded"
    obj = _base(
        store,
        "invoice_payment",
        "inpay_",
        amount_paid=intent["amount_received"] if paid else None,
        amount_requested=intent["amount"],
        currency=intent["currency"],
        invoice=invoice_obj["id"],
        is_default=True,
        payment={"payment_intent": intent["id"], "type": "payment_intent"},
        status="paid" if paid else "open",
        status_transitions={
            "canceled_at": None,
            "paid_at": invoice_obj["status_transitions"]["paid_at"] if paid else None,
        },
    )
    obj["created"] = intent["created"]
    return obj


def charge(
    store: Store,
    intent: dict[str, Any],
    *,
    status: str,
    payment_method_id: str,
    email: str | None,
    name: str | None,
    last4: str = "4242",
) -> dict[str, Any]:
    """A charge for ``intent`` in ``status`` succeeded, pending or failed."""
    succeeded = status == "succeeded"
    obj = _base(
        store,
        "charge",
        "ch_",
        amount=intent["amount"],
        amount_captured=intent["amount"] if succeeded else 0,
        amount_refunded=0,
        balance_transaction=None,
        billing_details={
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": email,
            "name": name,
            "phone": None,
            "tax_id": None,
        },
        captured=succeeded,
        currency=intent["currency"],
        customer=intent["customer"],
        description=intent["description"],
        disputed=False,
        failure_code=None,
        failure_message=None,
        metadata=dict(intent["metadata"]),
        outcome={
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 12,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        paid=succeeded,
        payment_intent=intent["id"],
        payment_method=payment_method_id,
        payment_method_details=card_details(last4),
        receipt_email=intent.get("receipt_email"),
        receipt_url=None,
        refunded=False,
        review=None,
        shipping=None,
        source=None,
        status=status,
        transfer_data=None,
    )
    # No ``refunds`` list: Stripe includes it only with ``expand[]=refunds`` (see charges.py).
    obj["receipt_url"] = f"https://pay.stripe.com/receipts/payment/{obj['id']}"
    return obj


def refund(
    store: Store,
    charge_obj: dict[str, Any],
    *,
    amount: int,
    status: str,
    reason: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """A refund of ``amount`` against ``charge_obj``."""
    return _base(
        store,
        "refund",
        "re_",
        amount=amount,
        balance_transaction=new_id("txn_"),
        charge=charge_obj["id"],
        currency=charge_obj["currency"],
        customer=charge_obj.get("customer"),
        # ``reference`` (the acquirer reference number) is absent until the network assigns it.
        destination_details={
            "card": {
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        metadata=dict(metadata),
        payment_intent=charge_obj.get("payment_intent"),
        payment_method=charge_obj.get("payment_method"),
        reason=reason,
        status=status,
    )


def subscription_item(
    store: Store, price_obj: dict[str, Any], quantity: int, sub_id: str, start: int, end: int
) -> dict[str, Any]:
    """A subscription item for ``price_obj`` over the period ``[start, end)``."""
    return _base(
        store,
        "subscription_item",
        "si_",
        billing_thresholds=None,
        current_period_end=end,
        current_period_start=start,
        discounts=[],
        metadata={},
        plan=plan_from_price(price_obj),
        price=copy.deepcopy(price_obj),
        quantity=quantity,
        subscription=sub_id,
        tax_rates=[],
    )


def subscription(
    store: Store,
    *,
    customer_id: str,
    currency: str,
    metadata: dict[str, str],
    start: int,
    description: str | None = None,
) -> dict[str, Any]:
    """An active subscription without items (the caller adds them)."""
    obj = _base(
        store,
        "subscription",
        "sub_",
        automatic_tax={"disabled_reason": None, "enabled": False, "liability": None},
        billing_cycle_anchor=start,
        billing_cycle_anchor_config=None,
        billing_mode={"flexible": None, "type": "classic"},
        billing_schedules=[],
        billing_thresholds=None,
        cancel_at=None,
        cancel_at_period_end=False,
        canceled_at=None,
        cancellation_details={
            "comment": None,
            "feedback": None,
            "feedback_option": None,
            "reason": None,
        },
        created=start,
        currency=currency,
        customer=customer_id,
        default_payment_method=None,
        description=description,
        ended_at=None,
        latest_invoice=None,
        managed_payments=None,
        metadata=dict(metadata),
        next_pending_invoice_item_invoice=None,
        pause_collection=None,
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        pending_invoice_item_interval=None,
        pending_update=None,
        start_date=start,
        status="active",
        transfer_data=None,
        trial_end=None,
        trial_settings={
            "end_behavior": {
                "billing_cycle_anchor": None,
                "missing_payment_method": "create_invoice",
            }
        },
        trial_start=None,
    )
    obj["items"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "url": f"/v1/subscription_items?subscription={obj['id']}",
    }
    return obj


def invoice(
    store: Store,
    *,
    customer_obj: dict[str, Any],
    subscription_obj: dict[str, Any] | None,
    currency: str,
    billing_reason: str,
    preview: bool = False,
) -> dict[str, Any]:
    """A draft invoice with no lines (see :func:`invoice_line`)."""
    obj = _base(
        store,
        "invoice",
        "in_",
        account_name="Stripe emulator",
        amount_due=0,
        amount_overpaid=0,
        amount_paid=0,
        amount_remaining=0,
        amount_shipping=0,
        attempt_count=0,
        attempted=False,
        auto_advance=not preview,
        automatic_tax={
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        automatically_finalizes_at=None,
        billing_reason=billing_reason,
        currency=currency,
        customer=customer_obj["id"],
        customer_address=customer_obj.get("address"),
        customer_email=customer_obj.get("email"),
        customer_name=customer_obj.get("name"),
        customer_phone=customer_obj.get("phone"),
        customer_shipping=customer_obj.get("shipping"),
        due_date=None,
        effective_at=None,
        ending_balance=None,
        from_invoice=None,
        hosted_invoice_url=None,
        invoice_pdf=None,
        issuer={"type": "self"},
        last_finalization_error=None,
        next_payment_attempt=None,
        number=None,
        parent=None,
        period_end=store.now(),
        period_start=store.now(),
        shipping_cost=None,
        shipping_details=None,
        starting_balance=customer_obj.get("balance", 0),
        status="draft",
        subtotal=0,
        subtotal_excluding_tax=0,
        total=0,
        total_excluding_tax=0,
        total_pretax_credit_amounts=[],
        total_taxes=[],
        webhooks_delivered_at=None,
    )
    if preview:
        # Previews are not saved objects: Stripe gives them a non-retrievable id.
        obj["id"] = "upcoming_" + obj["id"]
    if subscription_obj is not None:
        obj["parent"] = {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription_obj["metadata"]),
                "subscription": subscription_obj["id"],
            },
            "type": "subscription_details",
        }
    obj["lines"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "url": f"/v1/invoices/{obj['id']}/lines",
    }
    return obj


def invoice_line(
    *,
    invoice_id: str,
    amount: int,
    currency: str,
    description: str,
    period: tuple[int, int],
    price_obj: dict[str, Any],
    quantity: int,
    subscription_id: str | None,
    subscription_item_id: str | None,
    proration: bool,
    invoice_item_id: str | None = None,
) -> dict[str, Any]:
    """An invoice line (``line_item``) for a subscription item or one of its prorations."""
    obj = fixture("line_item")
    obj.update(
        id=new_id("il_"),
        amount=amount,
        currency=currency,
        description=description,
        discount_amounts=[],
        invoice=invoice_id,
        metadata={},
        period={"start": period[0], "end": period[1]},
        quantity=quantity,
        subscription=subscription_id,
        pretax_credit_amounts=[],
        taxes=[],
        subtotal=amount,
        quantity_decimal=str(quantity),
        parent={
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": invoice_item_id,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            },
            "type": "subscription_item_details",
        }
        if subscription_item_id is not None
        # A one-time price bought with a subscription is billed as an invoice item.
        else {
            "invoice_item_details": {
                "invoice_item": invoice_item_id or new_id("ii_"),
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        pricing={
            "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
            "type": "price_details",
            "unit_amount_decimal": price_obj["unit_amount_decimal"],
        },
    )
    return obj


def invoice_item(
    store: Store,
    *,
    customer_id: str,
    line: dict[str, Any],
    subscription_id: str,
    subscription_item_id: str | None,
) -> dict[str, Any]:
    """A pending invoice item holding one proration until the next invoice picks it up."""
    return _base(
        store,
        "invoiceitem",
        "ii_",
        amount=line["amount"],
        currency=line["currency"],
        customer=customer_id,
        date=store.now(),
        description=line["description"],
        invoice=None,
        period=dict(line["period"]),
        proration=True,
        quantity=line["quantity"],
        quantity_decimal=str(line["quantity"]),
        net_amount=line["amount"],
        parent={
            "subscription_details": {
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            },
            "type": "subscription_details",
        },
        pricing=copy.deepcopy(line["pricing"]),
    )


def dispute(
    store: Store, charge_obj: dict[str, Any], *, amount: int, reason: str, due_by: int
) -> dict[str, Any]:
    """A new dispute (``needs_response``) on ``charge_obj``."""
    obj = _base(
        store,
        "dispute",
        "dp_",
        amount=amount,
        balance_transactions=[],
        charge=charge_obj["id"],
        currency=charge_obj["currency"],
        is_charge_refundable=False,
        payment_intent=charge_obj.get("payment_intent"),
        reason=reason,
        status="needs_response",
        enhanced_eligibility_types=[],
    )
    obj["evidence_details"].update(due_by=due_by, has_evidence=False, past_due=False)
    obj["payment_method_details"]["card"]["case_type"] = "chargeback"
    return obj


def event(
    store: Store,
    *,
    type: str,
    data_object: dict[str, Any],
    previous_attributes: dict[str, Any] | None,
    request: RequestInfo | None,
    pending_webhooks: int,
) -> dict[str, Any]:
    """An event carrying a snapshot of ``data_object``."""
    data: dict[str, Any] = {"object": data_object}
    if previous_attributes:
        data["previous_attributes"] = previous_attributes
    return _base(
        store,
        "event",
        "evt_",
        api_version=API_VERSION,
        data=data,
        pending_webhooks=pending_webhooks,
        request={
            "id": request.id if request else None,
            "idempotency_key": request.idempotency_key if request else None,
        },
        type=type,
    )
