"""The README's "Try it" ends as it says: a checkout started from the shell, paid in a browser
that is not signed in, then the F5 page asks to sign in and shows the purchase."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.support import BROWSER, CHROMIUM
from tests.tools.devstack import DevProcess, dev_environment, start_dev
from tools.devserver.routes import ROOT

pytestmark = BROWSER


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    base = tmp_path_factory.mktemp("f5")
    process = start_dev(base / "state", base / "dev.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def page(dev: DevProcess) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_a_purchase_started_with_curl_shows_on_f5_once_the_buyer_signs_in(
    dev: DevProcess, page: Any
) -> None:
    # Given a token from `make token` and a checkout started outside the browser
    token = subprocess.run(
        ["make", "token", "MEMBER=mem_try_it"],
        cwd=ROOT,
        env=dev_environment(dev.state_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    answer = httpx.post(
        f"{dev.api}/v1/checkout/sessions",
        headers={"Authorization": f"Bearer {token}"},
        json={"product": "business_plan_builder"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text

    # When the url is paid in a browser that never signed in
    page.goto(answer.json()["url"])
    page.click("#pay-success")
    page.wait_for_url(re.compile(r"/success\.html\?session_id=cs_"))

    # Then F5 asks to sign in instead of pretending to check, and says what happens next
    status = page.locator('.status[data-payment-state="signed-out"]')
    status.wait_for()
    assert "Sign in" in status.inner_text()
    assert page.inner_text("[data-payment-reference]") == answer.json()["id"]
    assert "add_project" in page.inner_text("[data-next-steps]")
    assert "e-mail" not in page.inner_text("body").lower()

    # And once signed in as the buyer it shows the purchase
    page.fill("#member-id", "mem_try_it")
    page.click("#sign-in")
    paid = page.locator('[data-payment-status][data-payment-state="paid"]')
    paid.wait_for(timeout=20_000)
    assert paid.inner_text() == "Payment confirmed: Business Plan Builder, $99."
