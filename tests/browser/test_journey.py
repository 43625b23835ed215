"""The member's journey in a real browser: the demo page uses the Webflow embed exactly as a
Webflow page would, against the whole local stack started in this process (API, Stripe
emulator, Memberstack stand-in, Make.com receiver, local SQS and the worker, real Postgres).

Headless Debian Chromium driven by Playwright; no browser download. Skipped only when
/usr/bin/chromium is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from payments.catalog import load_catalog
from payments.settings import get_settings
from tests.conftest import truncate_state
from tools.devserver.__main__ import SERVICE_VARIABLES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@dataclass
class LocalStack:
    api: str
    emulator: str
    make_receiver: str

    def add_project_payloads(self) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = httpx.get(f"{self.make_receiver}/_received").json()
        return [p for p in received if "checkout_session_id" in p]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def local_stack(database_url: str) -> Iterator[LocalStack]:
    """``make dev``'s stack on free ports, on this worker's test database."""
    from tools.devserver.__main__ import start

    saved = dict(os.environ)
    for name in SERVICE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "API_PORT": str(_free_port()),
            "STRIPE_EMULATOR_PORT": "0",
            "MEMBERSTACK_STANDIN_PORT": "0",
            "MAKE_RECEIVER_PORT": "0",
            "LOCAL_SQS_PORT": "0",
            "STRIPE_RETRY_BASE_SECONDS": "0.01",
        }
    )
    truncate_state(database_url)
    get_settings.cache_clear()
    try:
        with ExitStack() as stack:
            server = start(stack)
            server.start_in_thread()
            yield LocalStack(
                api=server.url,
                emulator=os.environ["STRIPE_API_BASE"],
                make_receiver=os.environ["MAKE_WEBHOOK_URL"],
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, local_stack: LocalStack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def _open_demo_as(page: Any, stack: LocalStack, member_id: str) -> None:
    page.goto(f"{stack.api}/")
    page.wait_for_selector('html[data-payments-prices="loaded"]')
    page.fill("#member-id", member_id)
    page.click("#sign-in")
    page.wait_for_selector(f'[data-demo-who] strong:text-is("{member_id}")')


def _new_member() -> str:
    return f"mem_browser_{uuid.uuid4().hex[:8]}"


def test_the_demo_page_shows_the_catalog_prices_and_asks_a_visitor_to_log_in(
    page: Any, local_stack: LocalStack
) -> None:
    # Given the demo page, as a visitor who is not signed in
    page.goto(f"{local_stack.api}/")
    page.wait_for_selector('html[data-payments-prices="loaded"]')

    # Then every product shows the catalog's name and price
    for product in load_catalog().public_view()["products"]:
        selector = f'[data-price-for="{product["id"]}"]'
        assert page.inner_text(selector) == product["display_price"]
        assert page.inner_text(f'[data-price-name-for="{product["id"]}"]') == product["name"]

    # When the visitor clicks Buy, they are asked to log in and the button works again
    page.click('[data-buy="business_plan_builder"]')
    message = page.locator('[data-product="business_plan_builder"] [data-payment-message]')
    message.wait_for(state="visible")
    assert message.inner_text() == "Please log in to buy."
    assert page.is_enabled('[data-buy="business_plan_builder"]')


def test_buying_pays_on_stripe_and_the_f5_page_shows_the_paid_purchase(
    page: Any, local_stack: LocalStack
) -> None:
    # Given a signed-in member on the demo page
    member_id = _new_member()
    _open_demo_as(page, local_stack, member_id)

    # When they buy, pay on the hosted checkout page and come back
    page.click('[data-buy="business_plan_builder"]')
    page.wait_for_url(re.compile(r"/checkout/cs_"))
    assert "$99.00" in page.inner_text("#amount")
    page.click("#pay-success")
    page.wait_for_url(re.compile(r"/success\.html\?session_id=cs_"))
    session_id = page.url.split("session_id=")[1]

    # Then the F5 page shows the purchase as paid, from GET /v1/me/payments
    status = page.locator('[data-payment-status][data-payment-state="paid"]')
    status.wait_for(timeout=20_000)
    assert status.inner_text() == "Payment confirmed: Business Plan Builder, $99."
    assert page.inner_text("[data-payment-reference]") == session_id

    # And Make.com received add_project for this purchase
    payloads = [
        p for p in local_stack.add_project_payloads() if p["checkout_session_id"] == session_id
    ]
    assert len(payloads) == 1
    assert payloads[0]["member_id"] == member_id
    assert payloads[0]["product"] == "business_plan_builder"
    assert payloads[0]["amount"] == 9900


def test_a_declined_card_returns_to_the_f4_page_with_its_message(
    page: Any, local_stack: LocalStack
) -> None:
    # Given a signed-in member who starts a checkout
    _open_demo_as(page, local_stack, _new_member())
    page.click('[data-buy="website_audit_feedback"]')
    page.wait_for_url(re.compile(r"/checkout/cs_"))

    # When the card is declined and they go back to the site
    page.click("#pay-decline")
    assert page.inner_text("#error") == "Your card was declined."
    page.click("#back-to-merchant")

    # Then the F4 page says nothing was charged and offers to retry at the catalog's price
    page.wait_for_url(re.compile(r"/cancel\.html"))
    assert "nothing was charged" in page.inner_text("[data-cancel-message]")
    page.wait_for_selector('html[data-payments-prices="loaded"]')
    assert page.inner_text('[data-price-for="website_audit_feedback"]') == "$79"
    assert page.is_enabled('[data-buy="website_audit_feedback"]')


def test_when_stripe_fails_the_button_shows_the_services_message(
    page: Any, local_stack: LocalStack
) -> None:
    # Given a signed-in member and Stripe refusing the next Checkout Session
    _open_demo_as(page, local_stack, _new_member())
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
