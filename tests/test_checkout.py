"""Checkout rules with an in-memory Stripe and the real SQL functions."""

from __future__ import annotations

import psycopg
import pytest

from payments import errors
from payments.adapters.postgres_store import PostgresStore
from payments.auth import Member
from payments.catalog import UnknownProduct, load_catalog
from payments.checkout import (
    AlreadyPurchased,
    CheckoutDeps,
    CheckoutUrls,
    PriceResolver,
    PricingUnavailable,
    SubscriptionExists,
    SwitchInProgress,
    checkout_idempotency_key,
    start_checkout,
)
from payments.models import StripePrice
from tests.fakes.stripe_gateway import FakeStripeGateway

pytestmark = pytest.mark.integration

ALICE = Member("mem_alice")


def catalog_prices() -> dict[str, StripePrice]:
    return {
        p.lookup_key: StripePrice(
            f"price_{p.id}", p.lookup_key, p.amount, p.currency, p.interval, True
        )
        for p in load_catalog().products
    }


def make_deps(store: PostgresStore, stripe: FakeStripeGateway, **kw: bool) -> CheckoutDeps:
    catalog = load_catalog()
    return CheckoutDeps(
        catalog=catalog,
        stripe=stripe,
        prices=PriceResolver(catalog, stripe),
        store=store,
        urls=CheckoutUrls.from_settings("https://site.example/f5", "https://site.example/f4"),
        **kw,
    )


def test_a_session_carries_the_member_product_and_fixed_urls(store: PostgresStore, db: str) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    session = start_checkout(make_deps(store, stripe), ALICE, "business_plan_builder", now=0)
    params = stripe.sessions[session.id]
    assert params["price_id"] == "price_business_plan_builder"
    assert params["member_id"] == "mem_alice"
    assert params["metadata"] == {
        "member_id": "mem_alice",
        "product": "business_plan_builder",
        "track": "business_plan_builder",
        "plan": "one_time",
    }
    assert params["success_url"] == "https://site.example/f5?session_id={CHECKOUT_SESSION_ID}"
    assert params["cancel_url"] == "https://site.example/f4"
    with psycopg.connect(db) as conn:
        purchase = conn.execute(
            "select member_id, product, amount, status from purchases"
        ).fetchall()
        logs = conn.execute(
            "select event_type, user_id, stripe_object_id from payment_logs"
        ).fetchall()
    assert purchase == [("mem_alice", "business_plan_builder", 9900, "open")]
    assert logs == [("checkout.session.created", "mem_alice", session.id)]


def test_a_double_click_returns_the_same_session_and_logs_once(
    store: PostgresStore, db: str
) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe)
    first = start_checkout(deps, ALICE, "website_audit_feedback", now=1000)
    second = start_checkout(deps, ALICE, "website_audit_feedback", now=1001)
    assert (first.id, first.url) == (second.id, second.url)
    assert len(stripe.sessions) == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from payment_logs").fetchone() == (1,)


def test_the_client_key_separates_deliberate_purchases() -> None:
    one = checkout_idempotency_key("mem_a", "p", "click-1", now=0)
    assert one == checkout_idempotency_key("mem_a", "p", "click-1", now=9999)
    assert one != checkout_idempotency_key("mem_a", "p", "click-2", now=0)
    assert one != checkout_idempotency_key("mem_b", "p", "click-1", now=0)
    with pytest.raises(errors.InvalidRequest):
        checkout_idempotency_key("mem_a", "p", "x" * 201, now=0)


def test_a_member_stripe_does_not_know_yet_gets_no_customer_on_the_click(
    store: PostgresStore, db: str
) -> None:
    # Given a member without a Stripe customer, when they start a checkout
    stripe = FakeStripeGateway(catalog_prices())
    session = start_checkout(make_deps(store, stripe), ALICE, "business_plan_builder")
    # Then Checkout is left to create the customer (the worker maps it at completion)
    assert stripe.sessions[session.id]["customer_id"] is None
    # And once the mapping exists, the next checkout uses it
    with psycopg.connect(db) as conn:
        conn.execute("insert into customers values ('mem_alice', 'cus_alice')")
    again = start_checkout(make_deps(store, stripe), ALICE, "website_audit_feedback")
    assert stripe.sessions[again.id]["customer_id"] == "cus_alice"


def test_a_second_tab_gets_the_session_already_open_instead_of_a_new_one(
    store: PostgresStore, db: str
) -> None:
    # Given a session opened in one tab (the embed sends a new Idempotency-Key per click)
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe)
    first = start_checkout(deps, ALICE, "business_plan_builder", client_key="tab-1")
    # When the member clicks Buy again in another tab
    second = start_checkout(deps, ALICE, "business_plan_builder", client_key="tab-2")
    # Then they get the same session: one session to pay, one row, one log line
    assert (second.id, second.url) == (first.id, first.url)
    assert len(stripe.sessions) == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from purchases").fetchone() == (1,)


def test_a_session_close_to_its_expiry_is_not_handed_out_again(
    store: PostgresStore, db: str
) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe)
    first = start_checkout(deps, ALICE, "business_plan_builder", client_key="tab-1")
    with psycopg.connect(db) as conn:
        conn.execute("update purchases set expires_at = now() + interval '5 minutes'")
    second = start_checkout(deps, ALICE, "business_plan_builder", client_key="tab-2")
    assert second.id != first.id


def test_a_subscription_checkout_expires_the_open_one_for_another_plan(
    store: PostgresStore, db: str
) -> None:
    # Given an open checkout for one plan
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe)
    growth = start_checkout(deps, ALICE, "growth_monthly", mode="subscription", client_key="g")
    # When the member starts one for the other plan
    start_checkout(deps, ALICE, "scale_monthly", mode="subscription", client_key="s")
    # Then the first is expired at Stripe and in our table: only one can be paid
    assert stripe.expired == [growth.id]
    with psycopg.connect(db) as conn:
        status = conn.execute(
            "select payment_status from purchases where checkout_session_id = %s", (growth.id,)
        ).fetchone()
    assert status == ("expired",)


def test_a_member_with_a_live_subscription_cannot_start_another(
    store: PostgresStore, db: str
) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "insert into subscriptions (id, member_id, stripe_customer_id, product, status,"
            " state_as_of) values ('sub_1', 'mem_alice', 'cus_1', 'growth_monthly', 'active',"
            " now())"
        )
    deps = make_deps(store, FakeStripeGateway(catalog_prices()))
    with pytest.raises(SubscriptionExists):
        start_checkout(deps, ALICE, "scale_monthly", mode="subscription")


def test_a_purchase_already_switched_cannot_be_switched_again(
    store: PostgresStore, db: str
) -> None:
    # Given a paid switch away from pi_original
    with psycopg.connect(db) as conn:
        conn.execute(
            "insert into purchases (checkout_session_id, member_id, product, amount, currency,"
            " status, payment_status, switch_from) values ('cs_switch', 'mem_alice',"
            " 'website_audit_feedback', 7900, 'usd', 'paid', 'paid', 'pi_original')"
        )
    deps = make_deps(store, FakeStripeGateway(catalog_prices()))
    # When a second switch of the same original starts, then it is refused up front
    with pytest.raises(SwitchInProgress):
        start_checkout(deps, ALICE, "social_media_email_campaign", switch_from="pi_original")


@pytest.mark.parametrize(
    "drift",
    [
        {"unit_amount": 9800},
        {"currency": "eur"},
        {"interval": "month"},
        {"active": False},
        None,
    ],
)
def test_price_drift_refuses_to_sell(store: PostgresStore, db: str, drift: dict | None) -> None:
    prices = catalog_prices()
    key = load_catalog().get("business_plan_builder").lookup_key
    if drift is None:
        del prices[key]
    else:
        prices[key] = StripePrice(**{**prices[key].__dict__, **drift})
    stripe = FakeStripeGateway(prices)
    with pytest.raises(PricingUnavailable) as caught:
        start_checkout(make_deps(store, stripe), ALICE, "business_plan_builder")
    assert caught.value.code == "pricing_unavailable"
    assert stripe.sessions == {}
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from purchases").fetchone() == (0,)


def test_prices_are_fetched_once_per_cache_window(store: PostgresStore) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe, allow_repeat_purchases=True)
    for n in range(3):
        start_checkout(deps, Member(f"mem_{n}"), "business_plan_builder")
    assert stripe.price_lookups == 1


def test_subscription_plans_are_not_sold_as_one_time(store: PostgresStore) -> None:
    with pytest.raises(UnknownProduct) as caught:
        start_checkout(
            make_deps(store, FakeStripeGateway(catalog_prices())), ALICE, "growth_monthly"
        )
    assert "business_plan_builder" in caught.value.message


def test_an_owned_track_is_not_sold_twice(store: PostgresStore, db: str) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe)
    start_checkout(deps, ALICE, "business_plan_builder", client_key="first")
    with psycopg.connect(db) as conn:
        conn.execute("update purchases set status = 'paid', payment_status = 'paid'")
    with pytest.raises(AlreadyPurchased):
        start_checkout(deps, ALICE, "business_plan_builder", client_key="second")
    # Unless the business allows it
    start_checkout(
        make_deps(store, stripe, allow_repeat_purchases=True),
        ALICE,
        "business_plan_builder",
        client_key="third",
    )
