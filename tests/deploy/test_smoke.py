"""The smoke test against the real handlers served locally (what `make dev` serves), each
check passing on a good deployment and failing on the fault it exists to catch."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from payments.catalog import load_catalog
from payments.settings import get_settings
from tests.conftest import truncate_state
from tools.devserver.__main__ import SERVICE_VARIABLES
from tools.local.memberstack import mint_token
from tools.smoke import main, run_smoke

pytestmark = pytest.mark.e2e

SITE = "https://www.business.example"


@dataclass
class LocalApi:
    url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def local_api(database_url: str) -> Iterator[LocalApi]:
    """`make dev`'s stack on free ports, on this worker's test database."""
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
            "ALLOWED_ORIGINS": SITE,
            "STRIPE_RETRY_BASE_SECONDS": "0.01",
            "RECONCILE_INTERVAL_SECONDS": "0",
        }
    )
    truncate_state(database_url)
    get_settings.cache_clear()
    try:
        with ExitStack() as stack:
            server = start(stack)
            server.start_in_thread()
            yield LocalApi(server.url)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def by_name(results: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for result in results:
        found.setdefault(result.name, []).append(result)
    return found


def test_a_good_deployment_passes_every_smoke_check(
    local_api: LocalApi, http: httpx.Client
) -> None:
    # Given the API served by the real handlers, and a test member's token
    token = mint_token("mem_smoke_buyer")

    # When the smoke test runs with the site's origin and the token
    results = run_smoke(http, local_api.url, origin=SITE, member_token=token)

    # Then every check passes, the checkout among them
    assert [(r.name, r.ok) for r in results] == [
        ("health", True),
        ("pricing", True),
        ("CORS", True),
        ("webhook", True),
        ("checkout", True),
    ]
    assert results[-1].detail.startswith("test-mode session cs_test_")


def test_without_a_token_no_checkout_is_started(local_api: LocalApi, http: httpx.Client) -> None:
    results = run_smoke(http, local_api.url, origin=SITE)
    assert "checkout" not in by_name(results)
    assert all(r.ok for r in results)


def test_an_origin_that_is_not_allowed_fails_cors(local_api: LocalApi, http: httpx.Client) -> None:
    [cors] = by_name(run_smoke(http, local_api.url, origin="https://elsewhere.example"))["CORS"]
    assert not cors.ok
    assert "AllowedOrigins" in cors.detail


def test_no_origin_fails_cors_and_says_what_to_pass(
    local_api: LocalApi, http: httpx.Client
) -> None:
    [cors] = by_name(run_smoke(http, local_api.url, origin=None))["CORS"]
    assert not cors.ok
    assert "--origin" in cors.detail


def test_a_refused_member_token_fails_the_checkout(local_api: LocalApi, http: httpx.Client) -> None:
    forged = mint_token("mem_smoke", app_id="app_other")
    [checkout] = by_name(run_smoke(http, local_api.url, origin=SITE, member_token=forged))[
        "checkout"
    ]
    assert not checkout.ok
    assert checkout.detail == "HTTP 401 unauthenticated"


def test_pricing_other_than_the_catalog_fails(
    local_api: LocalApi, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a repository whose catalog shows another price than the deployed one
    catalog = load_catalog()
    changed = catalog.model_copy(
        update={
            "products": tuple(
                p.model_copy(update={"amount": 10900}) if p.id == "business_plan_builder" else p
                for p in catalog.products
            )
        }
    )
    monkeypatch.setattr("tools.smoke.load_catalog", lambda: changed)

    [pricing] = by_name(run_smoke(http, local_api.url, origin=SITE))["pricing"]
    assert not pricing.ok
    assert "business_plan_builder" in pricing.detail


def test_an_unreachable_api_fails_once_and_stops(http: httpx.Client) -> None:
    results = run_smoke(http, "http://127.0.0.1:9", origin=SITE)
    assert [(r.name, r.ok) for r in results] == [("request", False)]


def test_a_webhook_route_that_accepts_unsigned_calls_fails(http: httpx.Client) -> None:
    # Given an API whose webhook route answers 200 to anything (a misrouted path)
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/webhooks/stripe":
            return httpx.Response(200, json={"received": True})
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handler)) as fake:
        [webhook] = by_name(run_smoke(fake, "http://api.test", origin=SITE))["webhook"]
    assert not webhook.ok
    assert "unsigned → HTTP 200" in webhook.detail


def test_the_command_exits_zero_on_a_good_deployment(
    local_api: LocalApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--api-url", local_api.url, "--origin", SITE]) == 0
    out = capsys.readouterr().out
    assert out.count("✓") == 4
