"""A member with several Stripe customers keeps every right over their subscription.

A first-time member's Checkout sessions carry no customer, so sessions in flight together (a
one-time purchase and a plan, two tabs) each create a Stripe customer, and only the first one
the worker sees is mapped in ``customers``. Ownership comes from our ``subscriptions`` row (the
member our checkout wrote in the metadata) and the subscription is checked against its own
customer; the Billing Portal opens the live subscription's customer. End to end: the handlers,
the Stripe emulator, the real worker and Postgres.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.stack import *  # noqa: F403
from tests.stack import Stack, api
from tests.subscriptions.conftest import (
    act,
    call,
    deliver,
    stripe_get,
    stripe_subscription,
    subscription_row,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker_env")]


def _pay(stack: Stack, session_id: str) -> dict[str, Any]:
    paid: dict[str, Any] = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{session_id}/pay", json={"outcome": "success"}
    )
    return paid


def _one_time_session(stack: Stack, member: str) -> str:
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": "business_plan_builder"},
        token=stack.token(member),
    )
    assert answer.status == 201, answer.body
    return str(answer.body["id"])


def _plan_session(stack: Stack, member: str, key: str) -> str:
    answer = call(
        stack,
        member,
        "POST",
        "/v1/subscriptions",
        {"product": "growth_monthly"},
        headers={"Idempotency-Key": key},
    )
    assert answer.status == 201, answer.body
    return str(answer.body["id"])


def _mapped_customer(db: str, member: str) -> str | None:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "select stripe_customer_id from customers where member_id = %s", (member,)
        ).fetchone()
    return row[0] if row else None


def _portal_customer(stack: Stack, member: str) -> object:
    answer = call(stack, member, "POST", "/v1/billing-portal")
    assert answer.status == 200, answer.body
    session_id = answer.body["url"].rsplit("/", 1)[1]
    return stack.emulator.emulator.store.get(session_id, "billing_portal.session")["customer"]


def _one_time_then_plan(stack: Stack, db: str, member: str) -> tuple[str, dict[str, Any]]:
    """A first-time member opens a purchase and a plan in two tabs, pays the purchase first and
    the plan second: two Stripe customers, the purchase's mapped. (mapped, paid plan session)"""
    purchase, plan = _one_time_session(stack, member), _plan_session(stack, member, "tab-2")
    bought = _pay(stack, purchase)
    deliver(stack, bought["customer"])
    subscribed = _pay(stack, plan)
    deliver(stack, subscribed["customer"])
    assert bought["customer"] != subscribed["customer"]
    assert _mapped_customer(db, member) == bought["customer"]
    return bought["customer"], subscribed


def test_a_plan_billed_to_the_members_second_customer_is_still_theirs_to_manage(
    stack: Stack, db: str, member: str
) -> None:
    # Given a member whose plan is billed to a customer other than their mapped one
    _, plan = _one_time_then_plan(stack, db, member)
    subscription = plan["subscription"]
    assert subscription_row(db, subscription)["member_id"] == member  # type: ignore[index]

    # When they preview a change, pause, resume and cancel it at period end
    preview = act(stack, member, subscription, "preview-change", {"product": "scale_monthly"})
    paused = act(stack, member, subscription, "pause", {})
    resumed = act(stack, member, subscription, "resume", {})
    canceled = act(stack, member, subscription, "cancel", {"at_period_end": True})

    # Then each is done at Stripe, on that subscription
    assert [a.status for a in (preview, paused, resumed, canceled)] == [200] * 4, [
        a.body for a in (preview, paused, resumed, canceled)
    ]
    assert stripe_subscription(stack, subscription)["cancel_at_period_end"] is True


def test_another_member_still_cannot_act_on_a_plan_billed_to_a_second_customer(
    stack: Stack, db: str, member: str
) -> None:
    _, plan = _one_time_then_plan(stack, db, member)
    stranger = f"{member}_other"
    _one_time_then_plan(stack, db, stranger)

    answer = act(stack, stranger, plan["subscription"], "cancel", {"at_period_end": False})

    assert answer.status == 404
    assert answer.body["error"]["code"] == "subscription_not_found"
    assert stripe_subscription(stack, plan["subscription"])["status"] == "active"


def test_a_plan_the_worker_has_not_recorded_is_its_members_by_stripes_metadata(
    stack: Stack, db: str, member: str
) -> None:
    # Given a member mapped to their purchase's customer, whose plan (on another customer)
    # was paid at Stripe but none of whose events reached the worker yet
    purchase, plan = _one_time_session(stack, member), _plan_session(stack, member, "tab-2")
    deliver(stack, _pay(stack, purchase)["customer"])
    subscribed = _pay(stack, plan)
    assert subscription_row(db, subscribed["subscription"]) is None
    stranger = f"{member}_other"
    _one_time_then_plan(stack, db, stranger)

    # When a stranger, then the member, cancel it
    by_stranger = act(stack, stranger, subscribed["subscription"], "cancel", {})
    by_owner = act(stack, member, subscribed["subscription"], "cancel", {})

    # Then Stripe's record of whose plan it is decides
    assert by_stranger.status == 404
    assert by_owner.status == 200, by_owner.body


def test_the_portal_opens_the_customer_the_members_plan_is_billed_to(
    stack: Stack, db: str, member: str
) -> None:
    # Given a member whose plan is billed to a customer other than their mapped one
    mapped, plan = _one_time_then_plan(stack, db, member)

    # When they open the Billing Portal, then it is the plan's customer (its card, its
    # invoices, where a failed renewal is fixed)
    assert _portal_customer(stack, member) == plan["customer"] != mapped

    # And once the plan has ended, the mapped customer again
    ended = act(stack, member, plan["subscription"], "cancel", {"at_period_end": False})
    assert ended.status == 200
    deliver(stack, plan["customer"])
    assert _portal_customer(stack, member) == mapped


def test_two_plans_paid_on_two_new_customers_leave_one_live_plan_its_member_manages(
    stack: Stack, db: str, member: str
) -> None:
    # Given a first-time member with a purchase and two checkouts of a plan in flight at once
    # (the second request read the member's state before the first one recorded its session:
    # the race the checkout's own checks cannot close)
    purchase = _one_time_session(stack, member)
    first = _plan_session(stack, member, "tab-2")
    with psycopg.connect(db) as conn:
        conn.execute(
            "update purchases set checkout_url = null where checkout_session_id = %s", (first,)
        )
    second = _plan_session(stack, member, "tab-3")
    assert first != second

    # When all three are paid, on three new customers, and the worker applies everything
    bought = _pay(stack, purchase)
    kept, duplicate = _pay(stack, first), _pay(stack, second)
    for paid in (bought, kept, duplicate):
        deliver(stack, paid["customer"])
    assert len({bought["customer"], kept["customer"], duplicate["customer"]}) == 3
    assert _mapped_customer(db, member) == bought["customer"]

    # Then one plan stays live at Stripe, the other is cancelled and its payment refunded
    assert stripe_subscription(stack, kept["subscription"])["status"] == "active"
    assert stripe_subscription(stack, duplicate["subscription"])["status"] == "canceled"
    (charged,) = stripe_get(stack, "/v1/payment_intents", customer=duplicate["customer"])["data"]
    refunds = stripe_get(stack, "/v1/refunds", payment_intent=charged["id"])["data"]
    assert [(r["reason"], r["amount"]) for r in refunds] == [("duplicate", charged["amount"])]
    # And the member manages the plan they kept, which the portal opens
    paused = act(stack, member, kept["subscription"], "pause", {})
    assert paused.status == 200, paused.body
    assert _portal_customer(stack, member) == kept["customer"]
    # And the cancelled duplicate is theirs too, and ended
    again = act(stack, member, duplicate["subscription"], "cancel", {})
    assert again.status == 409
    assert again.body["error"]["code"] == "subscription_canceled"
