"""Delivery chaos, property-based: whatever the journey and however its Stripe events arrive
(duplicated, shuffled, redelivered, to two workers at once, through database, Make.com and
Stripe failures and a worker killed after its commit), every event takes effect once, every
paid purchase reaches Make.com once, no money moves twice, and our state ends equal to
Stripe's. The engine is ``tools.reliability.chaos``; ``make reliability`` runs a large plan."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import truncate_state
from tests.stack import Stack
from tests.subscriptions.conftest import (
    act,
    customer_events,
    run_worker,
    stripe_subscription,
    subscribe,
    subscription_row,
)
from tools.reliability.chaos import (
    ACTION_KINDS,
    Action,
    ChaosEnv,
    ChaosPlan,
    FaultProfile,
    run_plan,
)

pytestmark = pytest.mark.integration

actions = st.builds(
    Action,
    kind=st.sampled_from(sorted(set(ACTION_KINDS))),
    target=st.integers(0, 50),
    choice=st.integers(0, 50),
)
plans = st.builds(
    ChaosPlan,
    rounds=st.lists(
        st.lists(actions, min_size=1, max_size=5).map(tuple), min_size=1, max_size=3
    ).map(tuple),
    seed=st.integers(0, 2**32 - 1),
    members=st.integers(1, 2),
)
# Always buy something first, so every example has money and dispatches to check.
opening = (Action("buy", 0, 0), Action("buy", 1, 1))


@settings(
    max_examples=18,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans)
def test_every_event_takes_effect_once_whatever_the_delivery_and_the_faults(
    chaos_env: ChaosEnv, plan: ChaosPlan
) -> None:
    # Given a clean database and a random journey that starts with two purchases
    truncate_state(chaos_env.database_url)
    plan = ChaosPlan(((*opening, *plan.rounds[0]), *plan.rounds[1:]), plan.seed, plan.members)

    # When its events are delivered duplicated, shuffled and redelivered to two workers
    # while databases, Make.com, Stripe and workers fail
    report = run_plan(chaos_env, plan, FaultProfile())

    # Then nothing was lost, dead-lettered or done twice, and we agree with Stripe
    assert report.problems == []
    assert report.counts.events > 0
    assert report.counts.make_dispatches == report.counts.purchases_fulfilled
    assert report.counts.purchases_fulfilled <= report.counts.purchases_paid


def test_two_subscription_changes_of_one_second_end_on_stripes_state_in_either_order(
    stack: Stack, db: str
) -> None:
    # Given a paid subscription whose plan was changed and which was then paused
    member = f"mem_{uuid.uuid4().hex[:10]}"
    subscribed = subscribe(stack, member)
    assert (
        act(stack, member, subscribed.subscription, "change", {"product": "scale_monthly"}).status
        == 200
    )
    assert act(stack, member, subscribed.subscription, "pause", {}).status == 200
    updates = [
        e
        for e in customer_events(stack, subscribed.customer)
        if e["type"] == "customer.subscription.updated"
    ]
    change, pause = updates[-2:]

    # When Stripe stamped both in the same second and the pause arrives before the change
    pause["created"] = change["created"]
    run_worker([pause])
    run_worker([change])

    # Then our row holds Stripe's current state (new plan and paused), not the last snapshot
    theirs = stripe_subscription(stack, subscribed.subscription)
    row = subscription_row(db, subscribed.subscription)
    assert row is not None
    assert (row["product"], row["pause_behavior"]) == (
        "scale_monthly",
        theirs["pause_collection"]["behavior"],
    )
