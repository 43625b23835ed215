"""payments.webhooks: what each Stripe event means, as SQL parameters (pure, no I/O)."""

from __future__ import annotations

import pytest

from payments.webhooks import (
    MalformedEvent,
    event_from_dict,
    interpret_event,
    parse_event,
    subscription_product,
)
from tests.webhooks import factories as f

pytestmark = pytest.mark.unit


def test_a_paid_session_targets_paid_and_an_unpaid_one_processing() -> None:
    paid = interpret_event(
        event_from_dict(f.event("checkout.session.completed", f.checkout_session()))
    )
    unpaid = interpret_event(
        event_from_dict(
            f.event("checkout.session.completed", f.checkout_session(payment_status="unpaid"))
        )
    )

    assert (paid.action, paid.data["target_status"]) == ("checkout_session", "paid")
    assert unpaid.data["target_status"] == "processing"


def test_a_subscription_without_product_metadata_gets_it_from_the_price_lookup_key() -> None:
    effect = interpret_event(
        event_from_dict(
            f.event(
                "customer.subscription.created", f.subscription(lookup_key="scale_monthly_usd_v1")
            )
        )
    )

    assert effect.data["product"] == "scale_monthly"


def test_the_period_end_is_read_from_the_subscription_when_items_lack_it() -> None:
    sub = f.subscription()
    del sub["items"]["data"][0]["current_period_end"]
    sub["current_period_end"] = 1767225600

    effect = interpret_event(event_from_dict(f.event("customer.subscription.updated", sub)))

    assert effect.data["current_period_end"] == "2026-01-01T00:00:00+00:00"


def test_a_deleted_subscription_is_canceled_whatever_its_payload_says() -> None:
    effect = interpret_event(
        event_from_dict(f.event("customer.subscription.deleted", f.subscription(status="active")))
    )

    assert effect.data["status"] == "canceled"


def test_an_unknown_event_type_is_ignored() -> None:
    effect = interpret_event(event_from_dict(f.event("invoice.finalized", {"id": "in_1"})))

    assert (effect.action, effect.object_id) == ("ignore", "in_1")


def test_log_metadata_never_carries_personal_data() -> None:
    session = f.checkout_session()
    session["metadata"]["email"] = "buyer@example.com"

    effect = interpret_event(event_from_dict(f.event("checkout.session.completed", session)))

    assert "buyer@example.com" not in repr(effect.log)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{", "not JSON"),
        ('{"object": "event", "id": "evt_1", "type": "x", "created": 1}', "data.object"),
        ('{"object": "event", "id": "cus_1", "type": "x", "created": 1}', "valid id"),
        ('{"object": "event", "id": "evt_1", "type": "x", "created": true}', "created"),
    ],
)
def test_a_payload_that_is_not_an_event_says_why(body: str, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse_event(body)


@pytest.mark.unit
def test_a_subscription_is_named_by_the_price_it_bills_not_stale_metadata() -> None:
    # Given a subscription moved to the Scale plan in the Dashboard, metadata still "growth"
    obj = f.subscription(lookup_key="scale_monthly_usd_v1", unit_amount=7900)
    obj["metadata"] = {"member_id": "mem_x", "product": "growth_monthly"}
    # Then the worker records the plan Stripe bills
    assert subscription_product(obj) == "scale_monthly"
    # And a price we do not know falls back to the metadata
    unknown = f.subscription(lookup_key=None)
    unknown["metadata"] = {"product": "growth_monthly"}
    assert subscription_product(unknown) == "growth_monthly"
