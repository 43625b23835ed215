"""Pure rules of subscription management: idempotency keys and the proration date."""

from __future__ import annotations

import pytest

from payments import errors
from payments.subscription_models import StripeSubscription
from payments.subscriptions import (
    ProrationDateOutOfPeriod,
    action_idempotency_key,
    resolve_proration_date,
)

pytestmark = pytest.mark.unit

NOW = 1_795_687_200.0
START, END = 1_795_600_000, 1_798_192_000


def _subscription() -> StripeSubscription:
    return StripeSubscription(
        id="sub_1",
        customer="cus_1",
        status="active",
        item_id="si_1",
        price_id="price_1",
        price_lookup_key="growth_monthly_usd_v1",
        current_period_start=START,
        current_period_end=END,
        cancel_at_period_end=False,
        pause_behavior=None,
        resumes_at=None,
    )


def key(**overrides: object) -> str:
    args: dict[str, object] = {
        "member_id": "mem_1",
        "subscription_id": "sub_1",
        "action": "change",
        "params": {"product": "scale_monthly"},
        "client_key": "click-1",
        "now": NOW,
    }
    args.update(overrides)
    return action_idempotency_key(**args)  # type: ignore[arg-type]


def test_a_retry_of_the_same_request_reuses_the_key() -> None:
    assert key() == key(now=NOW + 3600)


@pytest.mark.parametrize(
    "change",
    [
        {"member_id": "mem_2"},
        {"subscription_id": "sub_2"},
        {"action": "cancel"},
        {"params": {"product": "growth_monthly"}},
        {"client_key": "click-2"},
    ],
)
def test_any_other_intent_gets_another_key(change: dict[str, object]) -> None:
    assert key(**change) != key()


def test_without_a_client_key_identical_requests_are_one_click_only_briefly() -> None:
    first = key(client_key=None, now=NOW)
    assert key(client_key=None, now=NOW + 1) == first
    assert key(client_key=None, now=NOW + 120) != first


@pytest.mark.parametrize("bad", ["", "   ", "x" * 201, "tab\there"])
def test_an_unusable_client_key_is_a_400(bad: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="Idempotency-Key"):
        key(client_key=bad)


def test_without_a_date_the_change_prorates_from_now() -> None:
    assert resolve_proration_date(_subscription(), None, NOW) == int(NOW)


def test_a_subscription_ahead_of_the_wall_clock_prorates_from_its_period_start() -> None:
    assert resolve_proration_date(_subscription(), None, START - 500.0) == START


@pytest.mark.parametrize("date", [START - 1, END, END + 86400])
def test_a_requested_date_outside_the_period_is_refused(date: int) -> None:
    with pytest.raises(ProrationDateOutOfPeriod):
        resolve_proration_date(_subscription(), date, NOW)


def test_a_requested_date_inside_the_period_is_kept() -> None:
    assert resolve_proration_date(_subscription(), START, NOW) == START
