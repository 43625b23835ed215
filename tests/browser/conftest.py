"""The whole local stack for browser tests, started in the test process on free ports and on
this worker's test database (``make dev``'s ``start``: API, Stripe emulator, Memberstack
stand-in, Make.com receiver, local SQS and the worker), and Debian's Chromium driven by
Playwright (no browser download).

Each module gets its own stack: the worker polling the queue must stop before tests of other
modules truncate the database it writes to.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from payments.settings import get_settings
from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, LocalStack, free_port
from tests.conftest import truncate_state
from tools.devserver.__main__ import SERVICE_VARIABLES


@pytest.fixture(scope="module")
def local_stack(database_url: str) -> Iterator[LocalStack]:
    """``make dev``'s stack on free ports, on this worker's test database."""
    from tools.devserver.__main__ import start

    saved = dict(os.environ)
    for name in (*SERVICE_VARIABLES, "ACCOUNT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "API_PORT": str(free_port()),
            "STRIPE_EMULATOR_PORT": "0",
            "MEMBERSTACK_STANDIN_PORT": "0",
            "MAKE_RECEIVER_PORT": "0",
            "LOCAL_SQS_PORT": "0",
            "STRIPE_RETRY_BASE_SECONDS": "0.01",
            # A test runs the reconciler when it wants one, not on a timer mid-test.
            "RECONCILE_INTERVAL_SECONDS": "0",
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
                database_url=database_url,
                stripe_key=os.environ["STRIPE_SECRET_KEY"],
                admin_id=os.environ["ADMIN_MEMBER_IDS"].split(",")[0],
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
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    # A script error on any page is a failure, whatever the test looked at.
    assert errors == []


@pytest.fixture
def shot(page: Any, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``shot("step")`` saves a full-page screenshot as .local/screenshots/<test>/<n>-step.png."""
    folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    taken: list[Path] = []

    def take(step: str) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    return take
