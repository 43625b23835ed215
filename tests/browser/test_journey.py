"""The buyer's journey in a real browser: the demo page uses the Webflow embed exactly as a
Webflow page would, against the whole local stack started in this process (API, Stripe
emulator, Memberstack stand-in, Make.com receiver, local SQS and the worker, real Postgres).

Headless Debian Chromium driven by Playwright; no browser download. Skipped only when
/usr/bin/chromium is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from payments.catalog import load_catalog
from tests.browser.support import BROWSER, LocalStack, new_member, pay_on_stripe, sign_in

pytestmark = BROWSER


def test_the_demo_page_shows_the_catalog_prices_and_asks_a_visitor_to_log_in(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given the demo page, as a visitor who is not signed in
    page.goto(f"{local_stack.api}/")
    page.wait_for_selector('html[data-payments-prices="loaded"]')

    # Then every product shows the catalog's name and price
    for product in load_catalog().public_view()["products"]:
        selector = f'[data-price-for="{product["id"]}"]'
        assert page.inner_text(selector) == product["display_price"]
        assert page.inner_text(f'[data-price-name-for="{product["id"]}"]') == product["name"]
    shot("prices")

    # When the visitor clicks Buy, they are asked to log in and the button works again
    page.click('[data-buy="business_plan_builder"]')
    message = page.locator('[data-product="business_plan_builder"] [data-payment-message]')
    message.wait_for(state="visible")
    assert message.inner_text() == "Please log in to buy."
    assert page.is_enabled('[data-buy="business_plan_builder"]')
    shot("asked-to-log-in")

    # And the next click clears that message: only the card clicked last speaks
    page.click('[data-subscribe="growth_monthly"]')
    page.locator('[data-product="growth_monthly"] [data-payment-message]').wait_for(state="visible")
    assert message.is_hidden()


def test_buying_pays_on_stripe_and_the_f5_page_shows_the_paid_purchase(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a signed-in member on the demo page
    member_id = new_member()
    sign_in(page, local_stack, member_id)

    # When they buy, pay on the hosted checkout page and come back
    page.click('[data-buy="business_plan_builder"]')
    page.wait_for_url(re.compile(r"/checkout/cs_"))
    assert "$99.00" in page.inner_text("#amount")
    shot("hosted-checkout")
    session_id = pay_on_stripe(page)

    # Then the F5 page shows the purchase as paid, from GET /v1/me/payments
    status = page.locator('[data-payment-status][data-payment-state="paid"]')
    assert status.inner_text() == "Payment confirmed: Business Plan Builder, $99."
    assert page.inner_text("[data-payment-reference]") == session_id
    shot("f5-paid")

    # And Make.com received add_project for this purchase
    payloads = [
        p for p in local_stack.add_project_payloads() if p["checkout_session_id"] == session_id
    ]
    assert len(payloads) == 1
    assert payloads[0]["member_id"] == member_id
    assert payloads[0]["product"] == "business_plan_builder"
    assert payloads[0]["amount"] == 9900


def test_the_payments_list_shows_real_payments_only_and_the_owned_product_says_purchased(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a member whose card was declined once, then who paid
    member_id = new_member()
    sign_in(page, local_stack, member_id)
    page.click('[data-buy="website_audit_feedback"]')
    page.wait_for_url(re.compile(r"/checkout/cs_"))
    page.click("#pay-decline")
    page.click("#try-again")
    pay_on_stripe(page)

    # When they come back to the product page
    page.goto(f"{local_stack.api}/")
    owned = page.locator('[data-buy="website_audit_feedback"][data-owned]')
    owned.wait_for()

    # Then the product they own says so and cannot be bought again; the others can
    assert owned.inner_text() == "Purchased"
    assert owned.is_disabled()
    assert page.is_enabled('[data-buy="business_plan_builder"]')
    assert page.inner_text('[data-buy="business_plan_builder"]') == "Buy now"
    # And the payments list has the one payment: no "Checkout started", no "Card declined"
    history = page.locator("[data-payment-history]")
    page.wait_for_selector("[data-payment-history][data-payment-count]")
    lines = history.locator("li").all_inner_texts()
    assert len(lines) == 1
    assert lines[0].startswith("Paid · Website Audit & Feedback · $79")
    shot("owned-and-history")


def test_a_declined_card_returns_to_the_f4_page_with_its_message(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a signed-in member who starts a checkout
    sign_in(page, local_stack, new_member())
    page.click('[data-buy="website_audit_feedback"]')
    page.wait_for_url(re.compile(r"/checkout/cs_"))

    # When the card is declined and they go back to the site
    page.click("#pay-decline")
    assert page.inner_text("#error") == "Your card was declined."
    shot("declined")
    page.click("#back-to-merchant")

    # Then the F4 page says nothing was charged and offers to retry at the catalog's price
    page.wait_for_url(re.compile(r"/cancel\.html"))
    assert "nothing was charged" in page.inner_text("[data-cancel-message]")
    page.wait_for_selector('html[data-payments-prices="loaded"]')
    assert page.inner_text('[data-price-for="website_audit_feedback"]') == "$79"
    assert page.is_enabled('[data-buy="website_audit_feedback"]')
    shot("f4")


def test_when_stripe_fails_the_button_shows_the_services_message(
    page: Any, local_stack: LocalStack, shot: Callable[[str], Path]
) -> None:
    # Given a signed-in member and Stripe refusing the next Checkout Session
    sign_in(page, local_stack, new_member())
    httpx.post(
        f"{local_stack.emulator}/_emulator/faults",
        json={
            "method": "POST",
            "path": "/v1/checkout/sessions",
            "status": 500,
            "times": 1,
            "should_retry": False,
        },
    ).raise_for_status()

    # When they click Buy
    page.click('[data-buy="social_media_email_campaign"]')

    # Then the card shows the service's own message and the button can be clicked again
    message = page.locator('[data-product="social_media_email_campaign"] [data-payment-message]')
    message.wait_for(state="visible")
    assert message.inner_text()
    assert "Traceback" not in message.inner_text()
    assert page.is_enabled('[data-buy="social_media_email_campaign"]')
    assert page.url == f"{local_stack.api}/"
    shot("stripe-failed")
