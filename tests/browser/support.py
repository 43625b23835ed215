"""What the browser tests share: the stack handle, sign-in, paying on the emulator's hosted
page, waiting for the worker, and the accessibility checks."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from tests.prerequisites import needs
from tools.db import ROOT

T = TypeVar("T")

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
SCREENSHOTS = ROOT / ".local" / "screenshots"

# Every browser module: marked, and skipped only where Debian's Chromium is absent.
BROWSER = [
    pytest.mark.browser,
    needs(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed"),
]


@dataclass
class LocalStack:
    api: str
    emulator: str
    make_receiver: str
    database_url: str
    stripe_key: str
    admin_id: str

    def add_project_payloads(self) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = httpx.get(f"{self.make_receiver}/_received").json()
        return [p for p in received if "checkout_session_id" in p]

    def token(self, member_id: str) -> str:
        """A member token, as the demo page's picker gets it."""
        response = httpx.post(f"{self.api}/_local/member-token", json={"member_id": member_id})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def call(self, method: str, path: str, member_id: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(member_id)}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.api}{path}", headers=headers, timeout=20, **kwargs)

    def stripe(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.stripe_key}"}
        response = httpx.request(method, f"{self.emulator}{path}", headers=headers, **kwargs)
        response.raise_for_status()
        return response.json()

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, params).fetchall()

    def buy(self, member_id: str, product: str = "business_plan_builder") -> dict[str, Any]:
        """A one-time purchase made and paid without the browser (for the admin's tests); returns
        the paid session once the worker has recorded the purchase."""
        started = self.call(
            "POST",
            "/v1/checkout/sessions",
            member_id,
            json={"product": product},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        started.raise_for_status()
        paid = httpx.post(
            f"{self.emulator}/_emulator/checkout/sessions/{started.json()['id']}/pay",
            json={"outcome": "success"},
        )
        paid.raise_for_status()
        session: dict[str, Any] = paid.json()
        eventually(
            lambda: self.rows(
                "select 1 from purchases where checkout_session_id = %s and status = 'paid'",
                session["id"],
            )
        )
        return session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def new_member() -> str:
    return f"mem_browser_{uuid.uuid4().hex[:8]}"


def eventually(check: Callable[[], T], timeout: float = 20.0) -> T:
    """``check()`` once it is truthy (the worker applies webhooks a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {check}")
        time.sleep(0.2)


def sign_in(page: Any, stack: LocalStack, member_id: str, path: str = "/") -> None:
    """Open a demo page and sign in with the member picker (Memberstack's login on Webflow)."""
    page.goto(f"{stack.api}{path}")
    page.wait_for_selector('html[data-payments-prices="loaded"]')
    page.fill("#member-id", member_id)
    page.click("#sign-in")
    page.wait_for_selector(f'[data-demo-who] strong:text-is("{member_id}")')


def pay_on_stripe(page: Any) -> str:
    """On the emulator's hosted checkout: pay, come back to F5, wait until it says paid."""
    page.wait_for_url(re.compile(r"/checkout/cs_"))
    page.click("#pay-success")
    page.wait_for_url(re.compile(r"/success\.html\?session_id=cs_"))
    page.locator('[data-payment-status][data-payment-state="paid"]').wait_for(timeout=20_000)
    session_id: str = page.url.split("session_id=")[1]
    return session_id


# Every control in ``root`` with its accessible name, as a screen reader would announce it.
_UNLABELLED = """
(root) => {
  const nodes = root.querySelectorAll('button, a[href], input, select, textarea, [role="button"]');
  const name = (node) => {
    const labelled = node.getAttribute('aria-labelledby');
    if (labelled) {
      const ids = labelled.split(/\\s+/);
      return ids.map((id) => document.getElementById(id)?.textContent || '').join(' ');
    }
    if (node.getAttribute('aria-label')) return node.getAttribute('aria-label');
    if (node.labels && node.labels.length) {
      return [...node.labels].map((label) => label.textContent).join(' ');
    }
    if (['INPUT', 'SELECT', 'TEXTAREA'].includes(node.tagName)) return '';
    return node.textContent;
  };
  return [...nodes]
    .filter((node) => node.type !== 'hidden' && !node.closest('[hidden]'))
    .filter((node) => !(name(node) || '').trim())
    .map((node) => node.outerHTML.slice(0, 120));
}
"""


def assert_every_control_is_labelled(page: Any, selector: str) -> int:
    """Fail on any visible control in ``selector`` without an accessible name; return how many
    controls were checked, so a test can tell it looked at something."""
    root = page.locator(selector).first
    unlabelled = root.evaluate(_UNLABELLED)
    assert unlabelled == [], f"controls without a label: {unlabelled}"
    count: int = root.evaluate(
        "(root) => [...root.querySelectorAll('button, a[href], input, select, textarea')]"
        ".filter((n) => !n.closest('[hidden]')).length"
    )
    return count


def focus_outline(page: Any) -> dict[str, str]:
    """The outline of the element that has the keyboard focus."""
    outline: dict[str, str] = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return {style: s.outlineStyle, width: s.outlineWidth,"
        " tag: document.activeElement.tagName, text: document.activeElement.textContent}; }"
    )
    return outline


def assert_focus_is_visible(page: Any) -> None:
    outline = focus_outline(page)
    assert outline["style"] not in ("none", ""), outline
    assert float(outline["width"].removesuffix("px")) >= 2, outline


def tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until ``selector`` has the focus, as someone without a mouse would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")
