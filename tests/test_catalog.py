from __future__ import annotations

import pytest

from payments.catalog import UnknownProduct, format_amount, load_catalog

pytestmark = pytest.mark.unit


def test_the_three_one_time_tracks_have_the_published_prices() -> None:
    catalog = load_catalog()
    prices = {p.id: p.amount for p in catalog.products if p.mode == "payment"}
    assert prices == {
        "business_plan_builder": 9900,
        "social_media_email_campaign": 4900,
        "website_audit_feedback": 7900,
    }


def test_subscription_plans_are_monthly() -> None:
    plans = [p for p in load_catalog().products if p.mode == "subscription"]
    assert plans
    assert all(p.interval == "month" for p in plans)
    assert all(p.display_price.endswith("/month") for p in plans)


def test_every_product_has_its_own_stripe_lookup_key() -> None:
    keys = [p.lookup_key for p in load_catalog().products]
    assert len(keys) == len(set(keys))


def test_public_view_hides_the_lookup_key_and_shows_display_prices() -> None:
    view = load_catalog().public_view()
    first = view["products"][0]
    assert "lookup_key" not in first
    assert first == {
        "id": "business_plan_builder",
        "name": "Business Plan Builder",
        "description": first["description"],
        "amount": 9900,
        "currency": "usd",
        "mode": "payment",
        "display_price": "$99",
    }


def test_unknown_product_lists_the_valid_ids_for_the_mode() -> None:
    with pytest.raises(UnknownProduct) as caught:
        load_catalog().get("no_such_track", mode="payment")
    assert caught.value.code == "unknown_product"
    assert "business_plan_builder" in caught.value.message
    assert "growth_monthly" not in caught.value.message


def test_a_plan_sent_to_the_one_time_checkout_names_the_route_that_sells_it() -> None:
    with pytest.raises(UnknownProduct) as caught:
        load_catalog().get("growth_monthly", mode="payment")
    assert caught.value.code == "unknown_product"
    assert caught.value.message.startswith("growth_monthly is sold by POST /v1/subscriptions.")
    with pytest.raises(UnknownProduct) as caught:
        load_catalog().get("business_plan_builder", mode="subscription")
    assert "POST /v1/checkout/sessions" in caught.value.message


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (9900, "usd", "$99"),
        (4950, "usd", "$49.50"),
        (123456, "usd", "$1,234.56"),
        (-500, "usd", "-$5"),
        (1000, "chf", "10 CHF"),
    ],
)
def test_amounts_are_formatted_for_people(amount: int, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected
