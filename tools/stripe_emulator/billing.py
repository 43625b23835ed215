"""Subscriptions, invoices, invoice items and prorations.

Prorations follow Stripe's rule: when an item changes at ``proration_date``, the customer is
credited for the unused part of the old price and charged for the remaining part of the new one,
both by the fraction ``(period_end - proration_date) / (period_end - period_start)`` of the
item's current period, each rounded to the nearest minor unit. :func:`preview_invoice` and
:func:`update_subscription` share :func:`_proration_lines`, so a preview and the update that
follows it with the same ``proration_date`` produce the same amounts.

Periods live on subscription items (``current_period_start``/``current_period_end``), as in the
pinned API version.
"""

from __future__ import annotations

import calendar
import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from tools.stripe_emulator import charges, objects
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.events import changes, emit
from tools.stripe_emulator.expand import register_computed
from tools.stripe_emulator.state import (
    Store,
    deep_merge_metadata,
    match_created,
    new_id,
    paginate,
)

ENDED = ("canceled", "incomplete_expired")


def add_interval(timestamp: int, interval: str, count: int) -> int:
    """``timestamp`` moved forward by ``count`` intervals, months clamped like Stripe
    (Jan 31 + 1 month = Feb 28/29)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    if interval == "day":
        return int((moment + timedelta(days=count)).timestamp())
    if interval == "week":
        return int((moment + timedelta(weeks=count)).timestamp())
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _round(value: Fraction) -> int:
    """Round half away from zero to whole minor units."""
    magnitude = (abs(value.numerator) * 2 + value.denominator) // (2 * value.denominator)
    return magnitude if value >= 0 else -magnitude


def _product_name(store: Store, price: dict[str, Any]) -> str:
    product = store.objects.get(price["product"])
    return str(product["name"] if product else price["product"])


def _interval(price: dict[str, Any]) -> tuple[str, int]:
    recurring = price.get("recurring") or {}
    return recurring.get("interval", "month"), recurring.get("interval_count", 1)


def _describe(store: Store, price: dict[str, Any], quantity: int) -> str:
    interval, count = _interval(price)
    every = interval if count == 1 else f"{count} {interval}s"
    amount = objects.format_amount(price["unit_amount"] or 0, price["currency"])
    return f"{quantity} × {_product_name(store, price)} (at {amount} / {every})"


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%d %b %Y").lstrip("0")


# Invoices ---------------------------------------------------------------------------------


def _set_lines(invoice: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    for line in lines:
        line["invoice"] = invoice["id"]
    invoice["lines"]["data"] = lines
    total = sum(line["amount"] for line in lines)
    invoice.update(
        subtotal=total, subtotal_excluding_tax=total, total=total, total_excluding_tax=total
    )
    periods = [line["period"] for line in lines if line["period"]["end"] > line["period"]["start"]]
    if periods:
        invoice["period_start"] = min(p["start"] for p in periods)
        invoice["period_end"] = max(p["end"] for p in periods)
    # A credit balance (negative) pays first; what is left over stays on the customer.
    net = total + invoice["starting_balance"]
    invoice["amount_due"] = max(0, net)
    invoice["amount_remaining"] = invoice["amount_due"]
    invoice["ending_balance"] = min(0, net)


def _new_invoice(
    store: Store,
    customer: dict[str, Any],
    sub: dict[str, Any] | None,
    billing_reason: str,
    lines: list[dict[str, Any]],
    *,
    preview: bool = False,
) -> dict[str, Any]:
    invoice = objects.invoice(
        store,
        customer_obj=customer,
        subscription_obj=sub,
        currency=sub["currency"] if sub else "usd",
        billing_reason=billing_reason,
        preview=preview,
    )
    _set_lines(invoice, lines)
    return invoice


def _finalize(store: Store, invoice: dict[str, Any], customer: dict[str, Any]) -> None:
    now = store.now()
    invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice.update(
        status="open",
        effective_at=now,
        hosted_invoice_url=f"https://invoice.stripe.com/i/emulator/{invoice['id']}",
        invoice_pdf=f"https://pay.stripe.com/invoice/emulator/{invoice['id']}/pdf",
    )
    invoice["status_transitions"].update(finalized_at=now)
    # Stripe moves the applied credit off the customer when the invoice is finalised.
    customer["balance"] = invoice["ending_balance"]
    emit(store, "invoice.finalized", invoice)


def _mark_paid(store: Store, invoice: dict[str, Any]) -> None:
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        attempted=True,
        attempt_count=max(1, invoice["attempt_count"]),
    )
    invoice["status_transitions"].update(paid_at=store.now())
    emit(store, "invoice.paid", invoice)
    emit(store, "invoice.payment_succeeded", invoice)
    payment = store.objects.get(store.hidden(invoice["id"]).get("invoice_payment", ""))
    if payment is not None:
        intent = store.objects[payment["payment"]["payment_intent"]]
        payment.update(status="paid", amount_paid=intent["amount_received"])
        payment["status_transitions"]["paid_at"] = invoice["status_transitions"]["paid_at"]
        emit(store, "invoice_payment.paid", payment)


def _invoice_payments(store: Store, invoice: dict[str, Any]) -> dict[str, Any]:
    """``expand[]=payments`` on an invoice: the payments (by payment intent) made for it."""
    payment = store.objects.get(store.hidden(invoice["id"]).get("invoice_payment", ""))
    return {
        "object": "list",
        "data": [payment] if payment is not None else [],
        "has_more": False,
        "url": f"/v1/invoice_payments?invoice={invoice['id']}",
    }


register_computed("invoice", "payments", _invoice_payments)


def _collect(
    store: Store,
    invoice: dict[str, Any],
    customer: dict[str, Any],
    outcome: str,
    description: str,
) -> dict[str, Any] | None:
    """Create, finalise and pay ``invoice``; returns the payment intent if one was needed."""
    store.add(invoice)
    emit(store, "invoice.created", invoice)
    _finalize(store, invoice, customer)
    if invoice["amount_due"] == 0:
        _mark_paid(store, invoice)
        return None
    intent = charges.new_intent(
        store,
        amount=invoice["amount_due"],
        currency=invoice["currency"],
        customer_id=customer["id"],
        metadata={},
        description=description,
    )
    payment = store.add(objects.invoice_payment(store, invoice, intent))
    store.hidden(invoice["id"])["invoice_payment"] = payment["id"]
    charges.attempt(store, intent, outcome, email=customer.get("email"), name=customer.get("name"))
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    if outcome == "success":
        _mark_paid(store, invoice)
    elif outcome == "decline":
        invoice["next_payment_attempt"] = store.now() + 3 * 86400
        emit(store, "invoice.payment_failed", invoice)
    return intent


def settle_invoice(store: Store, invoice_id: str, succeeded: bool) -> dict[str, Any]:
    """Finish the delayed payment of an invoice (from a delayed Checkout payment)."""
    invoice = store.get(invoice_id, "invoice")
    payment = store.get(store.hidden(invoice_id).get("invoice_payment"), "invoice_payment")
    intent = store.get(payment["payment"]["payment_intent"], "payment_intent")
    charges.settle(store, intent, succeeded)
    sub = store.objects.get(invoice_subscription(invoice) or "")
    if succeeded:
        _mark_paid(store, invoice)
        return invoice
    invoice["next_payment_attempt"] = store.now() + 3 * 86400
    emit(store, "invoice.payment_failed", invoice)
    if sub is not None and sub["status"] not in ENDED:
        before = store.snapshot(sub)
        sub["status"] = "past_due"
        emit(store, "customer.subscription.updated", sub, changes(before, sub))
    return invoice


def invoice_subscription(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills: ``parent.subscription_details.subscription`` (the
    top-level ``subscription`` field is gone since API version 2025-03-31)."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    subscription: str | None = details.get("subscription")
    return subscription


def list_invoices(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/invoices`` (``customer``, ``subscription``, ``status``, ``created``)."""
    items = store.all("invoice")
    for field in ("customer", "status"):
        if field in params:
            items = [i for i in items if i[field] == params[field]]
    if "subscription" in params:
        items = [i for i in items if invoice_subscription(i) == params["subscription"]]
    if "created" in params:
        items = [i for i in items if match_created(i, params["created"])]
    return paginate(items, params, "/v1/invoices")


def list_invoice_lines(store: Store, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/invoices/{id}/lines``."""
    invoice = store.get(invoice_id, "invoice")
    # Lines keep invoice order (Stripe does not reverse them).
    lines = list(reversed(invoice["lines"]["data"]))
    page = paginate(lines, params, f"/v1/invoices/{invoice_id}/lines")
    page["data"] = list(reversed(page["data"]))
    return page


def list_invoice_items(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/invoiceitems`` (``customer``, ``invoice``, ``pending``)."""
    items = store.all("invoiceitem")
    for field in ("customer", "invoice"):
        if field in params:
            items = [i for i in items if i[field] == params[field]]
    if "pending" in params:
        items = [i for i in items if (i["invoice"] is None) == params["pending"]]
    return paginate(items, params, "/v1/invoiceitems")


# Subscriptions ----------------------------------------------------------------------------


def _items(sub: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = sub["items"]["data"]
    return items


def _period(sub: dict[str, Any]) -> tuple[int, int]:
    items = _items(sub)
    if not items:
        return sub["billing_cycle_anchor"], sub["billing_cycle_anchor"]
    return items[0]["current_period_start"], items[0]["current_period_end"]


def _full_line(
    store: Store, sub: dict[str, Any], item: dict[str, Any], start: int, end: int
) -> dict[str, Any]:
    price = item["price"]
    return objects.invoice_line(
        invoice_id="",
        amount=(price["unit_amount"] or 0) * item["quantity"],
        currency=price["currency"],
        description=_describe(store, price, item["quantity"]),
        period=(start, end),
        price_obj=price,
        quantity=item["quantity"],
        subscription_id=sub["id"],
        subscription_item_id=item["id"],
        proration=False,
    )


def create_from_checkout(
    store: Store,
    *,
    customer: dict[str, Any],
    line_items: list[dict[str, Any]],
    metadata: dict[str, str],
    outcome: str,
    description: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the subscription bought in a subscription-mode Checkout Session.

    Returns ``(subscription, first invoice)``. ``outcome`` is how the first invoice is paid
    (``success``, or ``delayed`` for a bank debit that settles later).
    """
    now = store.now()
    currency = line_items[0]["price"]["currency"]
    sub = objects.subscription(
        store,
        customer_id=customer["id"],
        currency=currency,
        metadata=metadata,
        start=now,
        description=description,
    )
    lines: list[dict[str, Any]] = []
    for li in line_items:
        price = store.objects.get(li["price"]["id"], li["price"])
        if price["type"] != "recurring":
            lines.append(
                objects.invoice_line(
                    invoice_id="",
                    amount=(price["unit_amount"] or 0) * li["quantity"],
                    currency=price["currency"],
                    description=f"{li['quantity']} × {_product_name(store, price)}",
                    period=(now, now),
                    price_obj=price,
                    quantity=li["quantity"],
                    subscription_id=sub["id"],
                    subscription_item_id=None,
                    proration=False,
                )
            )
            continue
        interval, count = _interval(price)
        item = objects.subscription_item(
            store, price, li["quantity"], sub["id"], now, add_interval(now, interval, count)
        )
        store.add(item)
        _items(sub).append(item)
        lines.append(_full_line(store, sub, item, now, item["current_period_end"]))
    sub["default_payment_method"] = new_id("pm_")
    store.add(sub)
    invoice = _new_invoice(store, customer, sub, "subscription_create", lines)
    sub["latest_invoice"] = invoice["id"]
    emit(store, "customer.subscription.created", sub)
    _collect(store, invoice, customer, outcome, "Subscription creation")
    return sub, invoice


@dataclass
class _Change:
    """One subscription item before and after an update."""

    item: dict[str, Any] | None
    old_price: dict[str, Any] | None
    old_quantity: int
    new_price: dict[str, Any] | None
    new_quantity: int


def _plan_changes(
    store: Store, sub: dict[str, Any], specs: list[dict[str, Any]], param: str
) -> list[_Change]:
    by_id = {item["id"]: item for item in _items(sub)}
    result: list[_Change] = []
    for index, spec in enumerate(specs):
        where = f"{param}[{index}]"
        item = None
        if spec.get("id"):
            item = by_id.get(spec["id"])
            if item is None:
                raise StripeError(
                    f"No such subscription item: '{spec['id']}'",
                    status=400,
                    code="resource_missing",
                    param=f"{where}[id]",
                )
        price = None
        if spec.get("price"):
            price = store.get(spec["price"], "price", f"{where}[price]")
            if price["type"] != "recurring":
                raise StripeError(
                    "The price specified is set to `type=one_time` but this field only accepts "
                    "prices with `type=recurring`.",
                    param=f"{where}[price]",
                )
            if price["currency"] != sub["currency"]:
                raise StripeError(
                    "The price's currency must match the subscription's currency "
                    f"({sub['currency']}).",
                    param=f"{where}[price]",
                )
        if item is None and price is None:
            raise StripeError(
                f"Missing required param: {where}[price].",
                code="parameter_missing",
                param=f"{where}[price]",
            )
        if item is not None and spec.get("deleted"):
            result.append(_Change(item, item["price"], item["quantity"], None, 0))
            continue
        old_price = item["price"] if item else None
        old_quantity = item["quantity"] if item else 0
        new_price = price or old_price
        new_quantity = spec.get("quantity", old_quantity or 1)
        unchanged = (
            old_price is not None
            and new_price is not None
            and (new_price["id"] == old_price["id"] and new_quantity == old_quantity)
        )
        if unchanged:
            continue
        result.append(_Change(item, old_price, old_quantity, new_price, new_quantity))
    return result


def _resets_cycle(sub: dict[str, Any], plan: list[_Change]) -> bool:
    """True when an update moves the subscription to a different billing interval."""
    current = {_interval(i["price"]) for i in _items(sub)}
    return any(c.new_price is not None and _interval(c.new_price) not in current for c in plan)


def _check_proration_date(sub: dict[str, Any], proration_date: int, param: str) -> None:
    start, end = _period(sub)
    if not start <= proration_date < end:
        raise StripeError(
            f"The proration_date ({proration_date}) must be within the subscription's current "
            f"billing period ({start} to {end}).",
            param=param,
        )


def _proration_lines(
    store: Store,
    sub: dict[str, Any],
    plan: list[_Change],
    proration_date: int,
    *,
    credits_only: bool = False,
) -> list[dict[str, Any]]:
    """Credit (old price) and charge (new price) lines for each change; ``credits_only`` when
    the billing cycle restarts and the new price is billed for a whole new period instead."""
    start, end = _period(sub)
    fraction = Fraction(end - proration_date, end - start) if end > start else Fraction(0)
    lines = []
    for change in plan:
        item_id = change.item["id"] if change.item else None
        for price, quantity, sign, label in (
            (change.old_price, change.old_quantity, -1, "Unused time on"),
            (change.new_price, change.new_quantity, 1, "Remaining time on"),
        ):
            if price is None or quantity == 0 or (credits_only and sign > 0):
                continue
            amount = sign * _round((price["unit_amount"] or 0) * quantity * fraction)
            lines.append(
                objects.invoice_line(
                    invoice_id="",
                    amount=amount,
                    currency=price["currency"],
                    description=f"{label} {quantity} × {_product_name(store, price)} after "
                    f"{_when(proration_date)}",
                    period=(proration_date, end),
                    price_obj=price,
                    quantity=quantity,
                    subscription_id=sub["id"],
                    subscription_item_id=item_id,
                    proration=True,
                )
            )
    return lines


def _pending_item_lines(store: Store, sub: dict[str, Any]) -> list[dict[str, Any]]:
    """Invoice lines for the subscription's invoice items that no invoice has picked up yet."""
    lines = []
    for ii in reversed(store.all("invoiceitem")):
        parent = (ii.get("parent") or {}).get("subscription_details") or {}
        if ii["invoice"] is None and parent.get("subscription") == sub["id"]:
            price_id = ii["pricing"]["price_details"]["price"]
            lines.append(
                objects.invoice_line(
                    invoice_id="",
                    amount=ii["amount"],
                    currency=ii["currency"],
                    description=ii["description"],
                    period=(ii["period"]["start"], ii["period"]["end"]),
                    price_obj=store.objects.get(price_id)
                    or {"id": price_id, "product": None, "unit_amount_decimal": None},
                    quantity=ii["quantity"],
                    subscription_id=sub["id"],
                    subscription_item_id=parent.get("subscription_item"),
                    proration=bool(ii["proration"]),
                    invoice_item_id=ii["id"],
                )
            )
    return lines


def _claim_pending_items(store: Store, invoice: dict[str, Any]) -> None:
    for line in invoice["lines"]["data"]:
        details = line["parent"]["subscription_item_details"] or {}
        ii_id = details.get("invoice_item")
        if ii_id and ii_id in store.objects:
            store.objects[ii_id]["invoice"] = invoice["id"]


def _apply(store: Store, sub: dict[str, Any], plan: list[_Change], reset_at: int | None) -> None:
    start, end = _period(sub)
    for change in plan:
        if change.item is not None and change.new_price is None:
            _items(sub).remove(change.item)
            store.objects.pop(change.item["id"], None)
            continue
        assert change.new_price is not None
        if change.item is None:
            item = objects.subscription_item(
                store, change.new_price, change.new_quantity, sub["id"], start, end
            )
            store.add(item)
            _items(sub).append(item)
            continue
        change.item.update(
            price=copy.deepcopy(change.new_price),
            plan=objects.plan_from_price(change.new_price),
            quantity=change.new_quantity,
        )
    if reset_at is not None:
        sub["billing_cycle_anchor"] = reset_at
        for item in _items(sub):
            interval, count = _interval(item["price"])
            item["current_period_start"] = reset_at
            item["current_period_end"] = add_interval(reset_at, interval, count)


def _customer_of(store: Store, sub: dict[str, Any]) -> dict[str, Any]:
    return store.get(sub["customer"], "customer", "customer")


def update_subscription(store: Store, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/subscriptions/{id}``: items (with prorations), cancel_at_period_end,
    cancel_at, pause_collection, billing_cycle_anchor (``{"type": "now"}``: ``_restart_period``),
    metadata, description, default_payment_method."""
    sub = store.get(sub_id, "subscription")
    if sub["status"] in ENDED and set(params) - {"metadata", "cancellation_details", "expand"}:
        raise StripeError(
            "A canceled subscription can only update its cancellation_details and metadata.",
        )
    before = store.snapshot(sub)
    behavior = params.get("proration_behavior", "create_prorations")
    anchor = params.get("billing_cycle_anchor") or {}
    # The API sends {"type": ...} (since 2025); the helper also takes a plain word.
    restart = (anchor.get("type") if isinstance(anchor, dict) else anchor) == "now"
    if restart and behavior != "none":
        raise StripeError(
            "The emulator resets a billing cycle only with proration_behavior=none.",
            param="proration_behavior",
        )
    proration_date = params.get("proration_date", store.now())
    if "proration_date" in params:
        _check_proration_date(sub, proration_date, "proration_date")
    plan = _plan_changes(store, sub, params.get("items", []), "items")
    if plan:
        _check_proration_date(sub, proration_date, "proration_date")
        _change_items(store, sub, plan, behavior, proration_date)
    if "cancel_at_period_end" in params:
        sub["cancel_at_period_end"] = params["cancel_at_period_end"]
        sub["cancel_at"] = _period(sub)[1] if params["cancel_at_period_end"] else None
    if "cancel_at" in params:
        value = params["cancel_at"]
        sub["cancel_at"] = (
            None if value == "" else value if isinstance(value, int) else _period(sub)[1]
        )
    if "pause_collection" in params:
        pause = params["pause_collection"]
        sub["pause_collection"] = (
            None
            if pause == ""
            else {"behavior": pause["behavior"], "resumes_at": pause.get("resumes_at")}
        )
    if restart:
        _restart_period(store, sub)
    if "metadata" in params:
        sub["metadata"] = deep_merge_metadata(sub["metadata"], params["metadata"])
    for field in ("description", "default_payment_method", "collection_method", "days_until_due"):
        if field in params:
            sub[field] = params[field] or None
    if "cancellation_details" in params:
        sub["cancellation_details"].update(params["cancellation_details"])
    diff = changes(before, sub)
    if diff:
        emit(store, "customer.subscription.updated", sub, diff)
    return sub


def _change_items(
    store: Store, sub: dict[str, Any], plan: list[_Change], behavior: str, proration_date: int
) -> None:
    customer = _customer_of(store, sub)
    resets = _resets_cycle(sub, plan)
    lines = (
        _proration_lines(store, sub, plan, proration_date, credits_only=resets)
        if behavior != "none"
        else []
    )
    if resets:
        # A new interval restarts the billing cycle now and is invoiced at once.
        _apply(store, sub, plan, reset_at=proration_date)
        start, end = _period(sub)
        lines += [_full_line(store, sub, item, start, end) for item in _items(sub)]
        invoice = _new_invoice(store, customer, sub, "subscription_update", lines)
        _claim_pending_items(store, invoice)
        sub["latest_invoice"] = invoice["id"]
        _collect(store, invoice, customer, "success", "Subscription update")
        return
    _apply(store, sub, plan, reset_at=None)
    if behavior == "create_prorations":
        for line in lines:
            item = objects.invoice_item(
                store,
                customer_id=customer["id"],
                line=line,
                subscription_id=sub["id"],
                subscription_item_id=line["parent"]["subscription_item_details"][
                    "subscription_item"
                ],
            )
            store.add(item)
            emit(store, "invoiceitem.created", item)
    elif behavior == "always_invoice" and lines:
        invoice = _new_invoice(
            store,
            customer,
            sub,
            "subscription_update",
            _pending_item_lines(store, sub) + lines,
        )
        _claim_pending_items(store, invoice)
        sub["latest_invoice"] = invoice["id"]
        _collect(store, invoice, customer, "success", "Subscription update")


def preview_invoice(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/invoices/create_preview`` for a subscription change or its next renewal."""
    details = params.get("subscription_details") or {}
    if not params.get("subscription"):
        if not params.get("customer"):
            raise StripeError(
                "Missing required param: customer.", code="parameter_missing", param="customer"
            )
        return _preview_new(store, params, details)
    sub = store.get(params["subscription"], "subscription", "subscription")
    customer = _customer_of(store, sub)
    if params.get("customer") and params["customer"] != customer["id"]:
        raise StripeError(
            f"The subscription {sub['id']} does not belong to customer {params['customer']}.",
            param="customer",
        )
    behavior = details.get("proration_behavior", "create_prorations")
    proration_date = details.get("proration_date", store.now())
    _check_proration_date(sub, proration_date, "subscription_details[proration_date]")
    # Work on a copy: a preview must never change the subscription it previews.
    trial = copy.deepcopy(sub)
    plan = _plan_changes(store, trial, details.get("items", []), "subscription_details[items]")
    resets = _resets_cycle(trial, plan)
    lines = (
        _proration_lines(store, trial, plan, proration_date, credits_only=resets)
        if behavior != "none"
        else []
    )
    _apply(
        Store(clock_offset=store.clock_offset),
        trial,
        plan,
        reset_at=proration_date if resets else None,
    )
    start, end = _period(trial)
    if resets:
        lines += [_full_line(store, trial, item, start, end) for item in _items(trial)]
        reason = "subscription_update"
    elif behavior == "always_invoice" and plan:
        lines = _pending_item_lines(store, sub) + lines
        reason = "subscription_update"
    else:
        # The next regular invoice: pending items, these prorations, then the next period.
        following = [
            _full_line(store, trial, item, end, add_interval(end, *_interval(item["price"])))
            for item in _items(trial)
        ]
        lines = _pending_item_lines(store, sub) + lines + following
        reason = "upcoming"
    invoice = _new_invoice(store, customer, sub, reason, lines, preview=True)
    return invoice


def _preview_new(store: Store, params: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    customer = store.get(params["customer"], "customer", "customer")
    now = store.now()
    lines = []
    # The subscription does not exist yet: its items get ids of their own, as in Stripe's
    # preview, that no other call knows.
    for index, spec in enumerate(details.get("items", [])):
        price = store.get(
            spec.get("price"), "price", f"subscription_details[items][{index}][price]"
        )
        quantity = spec.get("quantity", 1)
        end = add_interval(now, *_interval(price)) if price["type"] == "recurring" else now
        lines.append(
            objects.invoice_line(
                invoice_id="",
                amount=(price["unit_amount"] or 0) * quantity,
                currency=price["currency"],
                description=_describe(store, price, quantity),
                period=(now, end),
                price_obj=price,
                quantity=quantity,
                subscription_id=None,
                subscription_item_id=new_id("si_"),
                proration=False,
            )
        )
    invoice = _new_invoice(store, customer, None, "subscription_create", lines, preview=True)
    if lines:
        invoice["currency"] = lines[0]["currency"]
    return invoice


def cancel_subscription(store: Store, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``DELETE /v1/subscriptions/{id}`` (``customer.subscription.deleted``)."""
    sub = store.get(sub_id, "subscription")
    if sub["status"] in ENDED:
        raise StripeError(f"Subscription {sub_id} has already been canceled.")
    now = store.now()
    sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at_period_end=False)
    sub["cancellation_details"].update(
        {"reason": "cancellation_requested", **(params.get("cancellation_details") or {})}
    )
    emit(store, "customer.subscription.deleted", sub)
    return sub


def list_subscriptions(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/subscriptions``: ``customer``, ``price``, ``status`` (``all`` includes ended
    ones, which are hidden by default like Stripe), ``created``."""
    items = store.all("subscription")
    status = params.get("status")
    if status is None:
        items = [s for s in items if s["status"] not in ENDED]
    elif status == "ended":
        items = [s for s in items if s["status"] in ENDED]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    if "customer" in params:
        items = [s for s in items if s["customer"] == params["customer"]]
    if "price" in params:
        items = [s for s in items if any(i["price"]["id"] == params["price"] for i in _items(s))]
    if "created" in params:
        items = [s for s in items if match_created(s, params["created"])]
    return paginate(items, params, "/v1/subscriptions")


def search_subscriptions(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/subscriptions/search``."""
    from tools.stripe_emulator.search import search

    fields = frozenset({"status", "created", "canceled_at"})
    return search(
        store.all("subscription"), params, fields, "subscriptions", "/v1/subscriptions/search"
    )


def list_subscription_items(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/subscription_items?subscription=...``."""
    sub = store.get(params["subscription"], "subscription", "subscription")
    items = list(reversed(_items(sub)))
    page = paginate(items, params, "/v1/subscription_items")
    page["data"] = list(reversed(page["data"]))
    return page


def _restart_period(
    store: Store, sub: dict[str, Any], billing_reason: str = "subscription_update"
) -> None:
    """A new period starts now and is invoiced in full at once, with the pending items
    (``billing_cycle_anchor=now``). Stripe's credit for the unused part of the old period is
    not emulated: updates reach here only with ``proration_behavior=none``."""
    _apply(store, sub, [], reset_at=store.now())
    customer = _customer_of(store, sub)
    start, end = _period(sub)
    lines = _pending_item_lines(store, sub) + [
        _full_line(store, sub, item, start, end) for item in _items(sub)
    ]
    invoice = _new_invoice(store, customer, sub, billing_reason, lines)
    _claim_pending_items(store, invoice)
    sub["latest_invoice"] = invoice["id"]
    _collect(store, invoice, customer, "success", "Subscription update")


def pause(store: Store, sub_id: str) -> dict[str, Any]:
    """Pause a subscription (status ``paused``): ``customer.subscription.paused``."""
    sub = store.get(sub_id, "subscription")
    if sub["status"] not in ("active", "trialing", "past_due"):
        raise StripeError(
            f"Subscription {sub_id} cannot be paused from status {sub['status']}.",
        )
    before = store.snapshot(sub)
    sub["status"] = "paused"
    emit(store, "customer.subscription.paused", sub)
    emit(store, "customer.subscription.updated", sub, changes(before, sub))
    return sub


def resume(store: Store, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Resume a paused subscription: a new period starts now and is invoiced
    (``billing_cycle_anchor: unchanged`` keeps the old period and invoices nothing)."""
    sub = store.get(sub_id, "subscription")
    if sub["status"] != "paused":
        raise StripeError(
            f"Subscription {sub_id} is not paused (status {sub['status']}).",
        )
    before = store.snapshot(sub)
    sub["status"] = "active"
    anchor = params.get("billing_cycle_anchor") or "now"
    if isinstance(anchor, dict):  # the API sends {"type": ...}; the helper takes a plain word
        anchor = anchor.get("type", "now")
    if anchor == "now":
        _restart_period(store, sub, billing_reason="subscription_cycle")
    emit(store, "customer.subscription.resumed", sub)
    emit(store, "customer.subscription.updated", sub, changes(before, sub))
    return sub


def advance(store: Store, sub_id: str, payment: str = "success") -> dict[str, Any]:
    """Test helper: move the subscription to its next period, like a test clock.

    The emulator's clock moves to the new period's start. The period's invoice holds the
    pending invoice items and one line per item; it is paid (``payment: success``), fails
    (``decline``: status ``past_due``), or follows ``pause_collection``. A subscription set to
    cancel at period end is canceled instead.
    """
    sub = store.get(sub_id, "subscription")
    if sub["status"] in ENDED:
        raise StripeError(f"Subscription {sub_id} has ended.")
    _start, end = _period(sub)
    if store.now() < end:
        store.clock_offset += end - store.now()
    before = store.snapshot(sub)
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= end):
        sub.update(status="canceled", canceled_at=end, ended_at=end)
        sub["cancellation_details"]["reason"] = "cancellation_requested"
        emit(store, "customer.subscription.deleted", sub)
        return sub
    for item in _items(sub):
        interval, count = _interval(item["price"])
        item["current_period_start"] = end
        item["current_period_end"] = add_interval(end, interval, count)
    new_start, new_end = _period(sub)
    pause_collection = sub["pause_collection"]
    if (
        pause_collection
        and pause_collection.get("resumes_at")
        and (pause_collection["resumes_at"] <= new_start)
    ):
        sub["pause_collection"] = pause_collection = None
    customer = _customer_of(store, sub)
    lines = _pending_item_lines(store, sub) + [
        _full_line(store, sub, item, new_start, new_end) for item in _items(sub)
    ]
    invoice = _new_invoice(store, customer, sub, "subscription_cycle", lines)
    _claim_pending_items(store, invoice)
    sub["latest_invoice"] = invoice["id"]
    if pause_collection:
        store.add(invoice)
        emit(store, "invoice.created", invoice)
        behavior = pause_collection["behavior"]
        if behavior != "keep_as_draft":
            _finalize(store, invoice, customer)
            invoice["status"] = "uncollectible" if behavior == "mark_uncollectible" else "void"
            emit(
                store,
                "invoice.marked_uncollectible"
                if behavior == "mark_uncollectible"
                else "invoice.voided",
                invoice,
            )
    else:
        _collect(store, invoice, customer, payment, "Subscription update")
        if payment == "decline":
            sub["status"] = "past_due"
        elif sub["status"] == "past_due":
            sub["status"] = "active"
    emit(store, "customer.subscription.updated", sub, changes(before, sub))
    return sub
