"""Subscriptions: updates with prorations, previews, cancellation, periods."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.emulator.conftest import Helpers, WebhookReceiver, monthly_price, subscribed

pytestmark = pytest.mark.integration

DAY = 86400


def _proration_amounts(lines: Any) -> list[int]:
    return sorted(line.amount for line in lines if line.parent.subscription_item_details.proration)


def _switch(sub: Any, price_id: str) -> list[dict[str, str]]:
    return [{"id": sub["items"].data[0].id, "price": price_id}]


def test_preview_and_update_with_the_same_proration_date_prorate_identically(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    # Given a $30/month subscription and a $60/month price, a third into the period
    sub = subscribed(client, helpers, 3000)
    bigger = monthly_price(client, 6000)
    item = sub["items"].data[0]
    proration_date = (
        item.current_period_start + (item.current_period_end - item.current_period_start) // 3
    )

    # When the change is previewed, then made with the same proration date
    preview = client.v1.invoices.create_preview(
        params={
            "customer": sub.customer,
            "subscription": sub.id,
            "subscription_details": {
                "items": _switch(sub, bigger.id),
                "proration_date": proration_date,
            },
        }
    )
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": _switch(sub, bigger.id),
            "proration_date": proration_date,
            "proration_behavior": "create_prorations",
        },
    )
    pending = client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True})

    # Then the credit and the charge are the same in both, two thirds of each price
    previewed = _proration_amounts(preview.lines.data)
    assert previewed == sorted(ii.amount for ii in pending.data)
    assert previewed == [-2000, 4000]
    assert preview.amount_due == 2000 + 6000  # prorations plus next month at the new price
    updated = client.v1.subscriptions.retrieve(sub.id)
    assert updated["items"].data[0].price.id == bigger.id


def test_preview_does_not_change_the_subscription(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    sub = subscribed(client, helpers)
    other = monthly_price(client, 9000)

    client.v1.invoices.create_preview(
        params={
            "customer": sub.customer,
            "subscription": sub.id,
            "subscription_details": {"items": _switch(sub, other.id)},
        }
    )

    after = client.v1.subscriptions.retrieve(sub.id)
    assert after["items"].data[0].price.id == sub["items"].data[0].price.id
    assert client.v1.invoice_items.list(params={"customer": sub.customer}).data == []


def test_always_invoice_bills_the_proration_at_once(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    sub = subscribed(client, helpers, 3000)
    bigger = monthly_price(client, 9000)
    item = sub["items"].data[0]
    half = item.current_period_start + (item.current_period_end - item.current_period_start) // 2
    preview = client.v1.invoices.create_preview(
        params={
            "customer": sub.customer,
            "subscription": sub.id,
            "subscription_details": {
                "items": _switch(sub, bigger.id),
                "proration_date": half,
                "proration_behavior": "always_invoice",
            },
        }
    )

    updated = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": _switch(sub, bigger.id),
            "proration_date": half,
            "proration_behavior": "always_invoice",
        },
    )

    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.id != sub.latest_invoice
    assert (invoice.status, invoice.billing_reason) == ("paid", "subscription_update")
    assert _proration_amounts(invoice.lines.data) == _proration_amounts(preview.lines.data)
    assert invoice.amount_paid == preview.amount_due == 4500 - 1500
    helpers.flush()
    assert receiver.types()[-1] == "customer.subscription.updated"
    assert "invoice.paid" in receiver.types()[-8:]


def test_proration_behavior_none_changes_the_price_without_prorations(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    sub = subscribed(client, helpers)
    other = monthly_price(client, 5000)

    client.v1.subscriptions.update(
        sub.id, params={"items": _switch(sub, other.id), "proration_behavior": "none"}
    )

    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == other.id
    assert client.v1.invoice_items.list(params={"customer": sub.customer}).data == []


@pytest.mark.parametrize("offset", [-DAY, 40 * DAY])
def test_proration_date_outside_the_current_period_is_rejected(
    client: stripe.StripeClient, helpers: Helpers, offset: int
) -> None:
    sub = subscribed(client, helpers)
    other = monthly_price(client, 5000)
    start = sub["items"].data[0].current_period_start

    with pytest.raises(stripe.InvalidRequestError) as update_error:
        client.v1.subscriptions.update(
            sub.id, params={"items": _switch(sub, other.id), "proration_date": start + offset}
        )
    with pytest.raises(stripe.InvalidRequestError) as preview_error:
        client.v1.invoices.create_preview(
            params={
                "subscription": sub.id,
                "subscription_details": {
                    "items": _switch(sub, other.id),
                    "proration_date": start + offset,
                },
            }
        )

    assert update_error.value.param == "proration_date"
    assert preview_error.value.param == "subscription_details[proration_date]"


def test_cancel_at_period_end_cancels_when_the_period_ends(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given a subscription set to cancel at period end
    sub = subscribed(client, helpers)
    flagged = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})

    # When its period ends
    helpers.post(f"/subscriptions/{sub.id}/advance")

    # Then it was still active until then, and is canceled after
    assert (flagged.status, flagged.cancel_at_period_end) == ("active", True)
    assert flagged.cancel_at == sub["items"].data[0].current_period_end
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    helpers.flush()
    events = [d.event() for d in receiver.received()]
    flag_event = next(
        e
        for e in events
        if e["type"] == "customer.subscription.updated"
        and e["data"]["object"]["cancel_at_period_end"]
    )
    assert flag_event["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert events[-1]["type"] == "customer.subscription.deleted"


def test_advance_starts_a_new_period_and_pays_its_invoice(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    sub = subscribed(client, helpers, 3000)
    old_end = sub["items"].data[0].current_period_end

    helpers.post(f"/subscriptions/{sub.id}/advance")

    renewed = client.v1.subscriptions.retrieve(sub.id)
    item = renewed["items"].data[0]
    assert item.current_period_start == old_end
    assert item.current_period_end > old_end
    invoice = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (invoice.billing_reason, invoice.status, invoice.amount_paid) == (
        "subscription_cycle",
        "paid",
        3000,
    )
    helpers.flush()
    assert "invoice.paid" in receiver.types()
    assert receiver.types()[-1] == "customer.subscription.updated"


def test_pending_prorations_are_billed_on_the_next_invoice(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    sub = subscribed(client, helpers, 3000)
    bigger = monthly_price(client, 6000)
    client.v1.subscriptions.update(sub.id, params={"items": _switch(sub, bigger.id)})
    pending = client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True})

    helpers.post(f"/subscriptions/{sub.id}/advance")

    invoice = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert invoice.amount_due == 6000 + sum(ii.amount for ii in pending.data)
    assert (
        client.v1.invoice_items.list(params={"customer": sub.customer, "pending": True}).data == []
    )


def test_pause_collection_is_set_and_cleared(client: stripe.StripeClient, helpers: Helpers) -> None:
    sub = subscribed(client, helpers)

    paused = client.v1.subscriptions.update(
        sub.id, params={"pause_collection": {"behavior": "keep_as_draft"}}
    )
    cleared = client.v1.subscriptions.update(sub.id, params={"pause_collection": ""})

    assert paused.pause_collection.behavior == "keep_as_draft"
    assert cleared.pause_collection is None


def test_resetting_the_billing_cycle_now_starts_a_period_invoiced_in_full(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    # Given a subscription whose renewal was voided while collection was paused
    sub = subscribed(client, helpers, 3000)
    client.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "void"}})
    helpers.post(f"/subscriptions/{sub.id}/advance")
    voided = client.v1.subscriptions.retrieve(sub.id)
    assert client.v1.invoices.retrieve(voided.latest_invoice).status == "void"
    now = helpers.post("/clock")["now"]

    # When collection resumes with the billing cycle reset to now, without prorations
    resumed = client.v1.subscriptions.update(
        sub.id,
        params={
            "pause_collection": "",
            "billing_cycle_anchor": {"type": "now"},
            "proration_behavior": "none",
        },
    )

    # Then a new period starts now and its invoice is paid in full at once
    item = resumed["items"].data[0]
    assert now <= item.current_period_start <= now + 5
    assert item.current_period_end > item.current_period_start
    invoice = client.v1.invoices.retrieve(resumed.latest_invoice)
    assert (invoice.status, invoice.amount_paid) == ("paid", 3000)


def test_resetting_the_billing_cycle_with_prorations_is_refused_as_not_emulated(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    sub = subscribed(client, helpers)

    with pytest.raises(stripe.InvalidRequestError, match="proration_behavior=none"):
        client.v1.subscriptions.update(sub.id, params={"billing_cycle_anchor": {"type": "now"}})

    assert client.v1.subscriptions.retrieve(sub.id).latest_invoice == sub.latest_invoice


def test_cancel_ends_the_subscription_and_hides_it_from_the_default_list(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    sub = subscribed(client, helpers)

    canceled = client.v1.subscriptions.cancel(sub.id)

    assert canceled.status == "canceled"
    assert canceled.ended_at is not None
    assert client.v1.subscriptions.list(params={"customer": sub.customer}).data == []
    listed = client.v1.subscriptions.list(params={"customer": sub.customer, "status": "canceled"})
    assert [s.id for s in listed.data] == [sub.id]
    helpers.flush()
    assert receiver.types()[-1] == "customer.subscription.deleted"


def test_subscriptions_are_listed_by_customer_and_status(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    mine = subscribed(client, helpers)
    subscribed(client, helpers)

    listed = client.v1.subscriptions.list(params={"customer": mine.customer, "status": "active"})

    assert [s.id for s in listed.data] == [mine.id]


def test_pause_and_resume_helpers_send_their_events(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    sub = subscribed(client, helpers)

    helpers.post(f"/subscriptions/{sub.id}/pause")
    paused = client.v1.subscriptions.retrieve(sub.id)
    helpers.post(f"/subscriptions/{sub.id}/resume")

    assert paused.status == "paused"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    helpers.flush()
    types = receiver.types()
    assert types.index("customer.subscription.paused") < types.index(
        "customer.subscription.resumed"
    )


def test_metadata_update_is_reported_in_previous_attributes(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    sub = subscribed(client, helpers)

    client.v1.subscriptions.update(sub.id, params={"metadata": {"seats": "5"}})

    helpers.flush()
    event = receiver.received()[-1].event()
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["object"]["metadata"] == {"user_id": "u_42", "seats": "5"}
    assert event["data"]["previous_attributes"] == {"metadata": {"user_id": "u_42"}}


def test_moving_to_a_yearly_price_restarts_the_cycle_and_bills_at_once(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    # Given a $30/month subscription and a $300/year price, half way through the month
    sub = subscribed(client, helpers, 3000)
    product = client.v1.products.create(params={"name": "Yearly"})
    yearly = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 30000,
            "recurring": {"interval": "year"},
        }
    )
    item = sub["items"].data[0]
    half = item.current_period_start + (item.current_period_end - item.current_period_start) // 2
    details = {"items": _switch(sub, yearly.id), "proration_date": half}

    # When the switch is previewed and made
    preview = client.v1.invoices.create_preview(
        params={"subscription": sub.id, "subscription_details": details}
    )
    updated = client.v1.subscriptions.update(
        sub.id, params={"items": _switch(sub, yearly.id), "proration_date": half}
    )

    # Then half a month is credited, a whole year is charged now, and a year-long period starts
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert sorted(line.amount for line in preview.lines.data) == [-1500, 30000]
    assert sorted(line.amount for line in invoice.lines.data) == [-1500, 30000]
    assert invoice.amount_paid == 28500
    new_item = updated["items"].data[0]
    assert new_item.current_period_start == half
    assert (new_item.current_period_end - half) // DAY in (365, 366)
