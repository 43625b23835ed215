"""Checkout rules with an in-memory Stripe and the real SQL functions."""

from __future__ import annotations

import threading

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
    checkout_idempotency_key,
    ensure_customer,
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
    assert first == second
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


def test_the_customer_is_created_once_and_reused(store: PostgresStore) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    deps = make_deps(store, stripe, allow_repeat_purchases=True)
    start_checkout(deps, ALICE, "business_plan_builder", client_key="a")
    start_checkout(deps, ALICE, "website_audit_feedback", client_key="b")
    assert len(stripe.customers) == 1
    customers = {s["customer_id"] for s in stripe.sessions.values()}
    assert customers == set(stripe.customers)


def test_racing_requests_store_one_customer_mapping(database_url: str, db: str) -> None:
    stripe = FakeStripeGateway(catalog_prices())
    results: list[str] = []

    def run() -> None:
        own = PostgresStore(db)
        results.append(ensure_customer("mem_race", stripe, own))
        own.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from customers").fetchone() == (1,)


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
        conn.execute("update purchases set status = 'paid'")
    with pytest.raises(AlreadyPurchased):
        start_checkout(deps, ALICE, "business_plan_builder", client_key="second")
    # Unless the business allows it
    start_checkout(
        make_deps(store, stripe, allow_repeat_purchases=True),
        ALICE,
        "business_plan_builder",
        client_key="third",
    )
