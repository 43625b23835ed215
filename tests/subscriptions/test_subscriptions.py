"""Pure rules of subscription management: idempotency keys, the proration date and behaviour,
and the signed quotes that let only the server price a plan change."""

from __future__ import annotations

import base64
import json

import pytest

from payments import errors
from payments.catalog import load_catalog
from payments.subscription_models import StripeSubscription
from payments.subscriptions import (
    QUOTE_TTL_SECONDS,
    Quote,
    QuoteInvalid,
    action_idempotency_key,
    proration_behavior_for,
    quote_secret,
    read_quote,
    resolve_proration_date,
    sign_quote,
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


def test_the_change_prorates_from_now() -> None:
    assert resolve_proration_date(_subscription(), NOW) == int(NOW)


def test_a_subscription_ahead_of_the_wall_clock_prorates_from_its_period_start() -> None:
    assert resolve_proration_date(_subscription(), START - 500.0) == START


# --- who pays how much for a change ---------------------------------------------------------

CATALOG = load_catalog()
GROWTH = CATALOG.get("growth_monthly")
SCALE = CATALOG.get("scale_monthly")


def test_an_upgrade_is_invoiced_at_once() -> None:
    # Deferred to the renewal, an upgrade followed by a cancellation would never be paid for.
    assert GROWTH.amount < SCALE.amount
    assert proration_behavior_for(GROWTH, SCALE) == "always_invoice"


def test_a_downgrade_credits_the_next_invoice() -> None:
    assert proration_behavior_for(SCALE, GROWTH) == "create_prorations"


def test_a_plan_the_catalog_does_not_know_is_invoiced_at_once() -> None:
    assert proration_behavior_for(None, GROWTH) == "always_invoice"


SECRET = quote_secret(None, "sk_test_quote_secret_material")


def _quote(**overrides: object) -> Quote:
    fields: dict[str, object] = {
        "member": "mem_1",
        "subscription": "sub_1",
        "from_price": "price_growth",
        "product": "scale_monthly",
        "proration_date": START + 10,
        "behavior": "always_invoice",
        "expires_at": int(NOW) + QUOTE_TTL_SECONDS,
    }
    fields.update(overrides)
    return Quote(**fields)  # type: ignore[arg-type]


def test_a_quote_reads_back_as_signed() -> None:
    quote = _quote()
    assert read_quote(SECRET, sign_quote(SECRET, quote), NOW) == quote


def test_a_quote_expires_within_ten_minutes() -> None:
    token = sign_quote(SECRET, _quote())
    assert QUOTE_TTL_SECONDS <= 600
    with pytest.raises(QuoteInvalid):
        read_quote(SECRET, token, NOW + QUOTE_TTL_SECONDS)


def _tampered(token: str, **changes: object) -> str:
    body, _, mac = token.partition(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    return f"{forged}.{mac}"


@pytest.mark.parametrize(
    "changes", [{"d": END - 1}, {"b": "none"}, {"p": "growth_monthly"}, {"e": int(NOW) + 10**6}]
)
def test_a_member_who_edits_a_quote_gets_it_refused(changes: dict[str, object]) -> None:
    token = sign_quote(SECRET, _quote())
    with pytest.raises(QuoteInvalid):
        read_quote(SECRET, _tampered(token, **changes), NOW)


def test_a_quote_signed_with_another_secret_is_refused() -> None:
    other = quote_secret(None, "sk_test_another_account_key")
    with pytest.raises(QuoteInvalid):
        read_quote(SECRET, sign_quote(other, _quote()), NOW)


@pytest.mark.parametrize("junk", ["", ".", "abc", "a.b.c", "%%%.###", "x" * 2000])
def test_junk_is_not_a_quote(junk: str) -> None:
    with pytest.raises(QuoteInvalid):
        read_quote(SECRET, junk, NOW)


def test_the_quote_secret_is_derived_from_the_stripe_key_unless_configured() -> None:
    assert quote_secret(None, "sk_test_a") != quote_secret(None, "sk_test_b")
    assert quote_secret("configured", "sk_test_a") == quote_secret("configured", "sk_test_b")
