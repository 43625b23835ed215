"""POST /v1/billing-portal end to end: the subscriptions handler, the Stripe emulator's portal
sessions and hosted page, the Memberstack stand-in and the real Postgres."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import stripe

from payments import errors
from payments.billing_portal import (
    CONFIGURATION_TTL_SECONDS,
    ConfigurationCache,
    PortalConfiguration,
    account_url,
    choose_configuration,
)
from tests.stack import *  # noqa: F403
from tests.stack import STRIPE_KEY, Stack, api
from tests.subscriptions.conftest import call, subscribe
from tools.seed_stripe import ensure_portal_configuration

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker_env")]

PORTAL = "/v1/billing-portal"


def _portal_sessions(stack: Stack) -> int:
    return stack.stripe_calls("POST /v1/billing_portal/sessions")


def _session_of(stack: Stack, url: str) -> dict[str, object]:
    """The emulator's record of the portal session behind ``url``."""
    session_id = url.rsplit("/", 1)[1]
    found: dict[str, object] = stack.emulator.emulator.store.get(
        session_id, "billing_portal.session"
    )
    return found


def test_without_a_token_the_portal_is_a_401(stack: Stack) -> None:
    answer = api("subscriptions", "POST", PORTAL)
    assert answer.status == 401
    assert _portal_sessions(stack) == 0


def test_a_member_who_never_paid_gets_a_409_in_plain_words(stack: Stack, member: str) -> None:
    answer = call(stack, member, "POST", PORTAL)
    assert answer.status == 409
    assert answer.body["error"]["code"] == "no_customer"
    assert "first payment" in answer.body["error"]["message"]
    assert _portal_sessions(stack) == 0


def test_a_subscriber_opens_the_portal_of_their_own_customer_and_returns_to_the_account(
    stack: Stack, member: str
) -> None:
    # Given a member who subscribed and paid
    subscribed = subscribe(stack, member)

    # When they open the Billing Portal
    answer = call(stack, member, "POST", PORTAL)

    # Then they get a portal session of their own customer, returning to the account page
    assert answer.status == 200, answer.body
    assert answer.headers.get("Cache-Control") == "no-store"
    session = _session_of(stack, answer.body["url"])
    assert session["customer"] == subscribed.customer
    assert session["return_url"] == "https://site.example/account"
    # And the hosted page shows the paid invoice and links back to the site
    page = httpx.get(answer.body["url"])
    assert page.status_code == 200
    assert subscribed.customer in page.text
    assert "$29.00" in page.text
    assert 'id=return-to-merchant href="https://site.example/account"' in page.text


def test_the_return_page_is_account_url_when_set(
    stack: Stack, member: str, service_env: pytest.MonkeyPatch
) -> None:
    from functions.subscriptions import app as subscriptions_app

    service_env.setenv("ACCOUNT_URL", "https://members.site.example/my-account")
    subscriptions_app._portal_deps.cache_clear()
    try:
        subscribe(stack, member)
        answer = call(stack, member, "POST", PORTAL)
    finally:
        subscriptions_app._portal_deps.cache_clear()
    assert _session_of(stack, answer.body["url"])["return_url"] == (
        "https://members.site.example/my-account"
    )


def test_another_member_never_gets_a_portal_on_someone_elses_customer(
    stack: Stack, member: str
) -> None:
    # Given A and B, two subscribers
    a = subscribe(stack, member)
    other = subscribe(stack, f"mem_{uuid.uuid4().hex[:10]}", "scale_monthly").member

    # When B opens the portal, and when B names A's customer in the body
    mine = call(stack, other, "POST", PORTAL)
    forged = call(stack, other, "POST", PORTAL, {"customer": a.customer})

    # Then B's portal is on B's customer, and a customer in the request is refused
    assert _session_of(stack, mine.body["url"])["customer"] != a.customer
    assert forged.status == 400
    assert forged.body["error"]["code"] == "invalid_request"


def test_a_double_click_opens_one_portal_session(stack: Stack, member: str) -> None:
    subscribe(stack, member)
    key = {"Idempotency-Key": str(uuid.uuid4())}

    first = call(stack, member, "POST", PORTAL, headers=key)
    second = call(stack, member, "POST", PORTAL, headers=key)

    # Stripe replayed the first request: one session, one URL
    customer = _session_of(stack, first.body["url"])["customer"]
    sessions = [
        s
        for s in stack.emulator.emulator.store.all("billing_portal.session")
        if s["customer"] == customer
    ]
    assert first.body["url"] == second.body["url"] == sessions[0]["url"]
    assert len(sessions) == 1


def test_stripe_failing_is_a_502_that_says_what_failed(stack: Stack, member: str) -> None:
    subscribe(stack, member)
    stack.fault("POST", "/v1/billing_portal/sessions", 500, 4, should_retry=False)

    answer = call(stack, member, "POST", PORTAL)

    assert answer.status == 502
    assert answer.body["error"] == {
        "code": "stripe_error",
        "message": "The payment portal could not be opened. Please retry in a moment.",
    }


def test_a_customer_deleted_in_stripe_is_a_409(stack: Stack, member: str, db: str) -> None:
    subscribe(stack, member)
    with psycopg.connect(db) as conn:
        [(customer,)] = conn.execute(
            "select stripe_customer_id from customers where member_id = %s", (member,)
        ).fetchall()
    httpx.delete(
        f"{stack.emulator.base_url}/v1/customers/{customer}",
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
    ).raise_for_status()

    answer = call(stack, member, "POST", PORTAL)

    assert answer.status == 409
    assert answer.body["error"]["code"] == "no_customer"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("account", "success", "expected"),
    [
        (None, "https://www.site.example/thank-you?session_id={X}", "https://www.site.example/account"),
        (None, "http://127.0.0.1:3000/success.html?session_id={X}", "http://127.0.0.1:3000/account.html"),
        (None, "https://site.example/en/paid", "https://site.example/en/account"),
        ("https://site.example/me", "https://site.example/paid", "https://site.example/me"),
    ],
)  # fmt: skip
def test_the_portal_returns_beside_the_f5_page_unless_account_url_is_set(
    account: str | None, success: str, expected: str
) -> None:
    assert account_url(account, success) == expected


# --- the portal's configuration: the service's, never the account's default --------------

CONFIGURATIONS = "/v1/billing_portal/configurations"


def _client(stack: Stack) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stack.emulator.base_url})


def _ours(stack: Stack) -> Any:
    [config] = [
        c
        for c in _client(stack).v1.billing_portal.configurations.list(params={"limit": 100}).data
        if PortalConfiguration.from_stripe(c.to_dict(recursive=True)).is_ours
    ]
    return config


@pytest.fixture
def fresh_container(stack: Stack) -> Iterator[None]:
    """A container that has not looked the configuration up yet; the account as seeded after."""
    from functions.subscriptions import app as subscriptions_app

    subscriptions_app._portal_deps.cache_clear()
    yield
    subscriptions_app._portal_deps.cache_clear()
    ensure_portal_configuration(STRIPE_KEY, stack.emulator.base_url)


def test_the_portal_opens_with_the_services_configuration_card_and_invoices_only(
    stack: Stack, member: str, fresh_container: None
) -> None:
    # Given the account's default configuration lets members switch plans (a Dashboard edit)
    client = _client(stack)
    subscribed = subscribe(stack, member)
    default_session = client.v1.billing_portal.sessions.create(
        params={"customer": subscribed.customer}
    )
    client.v1.billing_portal.configurations.update(
        default_session.configuration,
        params={
            "features": {
                "subscription_update": {
                    "enabled": True,
                    "default_allowed_updates": ["price", "quantity"],
                    "products": [{"product": "growth_monthly", "prices": ["price_any"]}],
                    "proration_behavior": "always_invoice",
                }
            }
        },
    )

    # When the member opens the portal through the service
    answer = call(stack, member, "POST", PORTAL)

    # Then the session names the service's configuration, which offers card and invoices only
    assert answer.status == 200, answer.body
    session = _session_of(stack, answer.body["url"])
    assert session["configuration"] == _ours(stack).id != default_session.configuration
    page = httpx.get(answer.body["url"]).text
    assert re.findall(r"data-feature=(\w+)", page) == ["invoice_history", "payment_method_update"]


def test_a_container_looks_the_configuration_up_once(
    stack: Stack, member: str, fresh_container: None
) -> None:
    subscribe(stack, member)
    for _ in range(3):
        assert call(stack, member, "POST", PORTAL).status == 200
    assert stack.stripe_calls(f"GET {CONFIGURATIONS}") == 1
    assert _portal_sessions(stack) == 3


def test_a_configuration_edited_to_allow_plan_changes_closes_the_portal_with_an_alert(
    stack: Stack, member: str, fresh_container: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the service's own configuration edited to let members cancel in the portal
    subscribe(stack, member)
    _client(stack).v1.billing_portal.configurations.update(
        _ours(stack).id, params={"features": {"subscription_cancel": {"enabled": True}}}
    )

    # When the member opens the portal
    answer = call(stack, member, "POST", PORTAL)

    # Then it stays closed (no session on any configuration), and someone is told how to fix it
    assert answer.status == 503
    assert answer.body["error"] == {
        "code": "portal_unavailable",
        "message": "The payment portal is not available right now. Please try again later.",
    }
    assert _portal_sessions(stack) == 0
    assert any(
        "billing portal closed" in r.getMessage() and "subscription_cancel" in r.getMessage()
        for r in caplog.records
    )

    # And once the account is seeded again, the same container opens it without a restart
    ensure_portal_configuration(STRIPE_KEY, stack.emulator.base_url)
    assert call(stack, member, "POST", PORTAL).status == 200


def test_a_configuration_deactivated_after_it_was_found_is_looked_up_again(
    stack: Stack, member: str, fresh_container: None
) -> None:
    # Given a container that found the configuration, which is then deactivated
    subscribe(stack, member)
    assert call(stack, member, "POST", PORTAL).status == 200
    _client(stack).v1.billing_portal.configurations.update(
        _ours(stack).id, params={"active": False}
    )

    # When the member clicks, Stripe refuses the inactive configuration: a 502
    refused = call(stack, member, "POST", PORTAL, headers={"Idempotency-Key": "after-deactivate"})
    assert refused.status == 502

    # Then after the account is repaired, the next click looks it up again and opens
    ensure_portal_configuration(STRIPE_KEY, stack.emulator.base_url)
    httpx.delete(f"{stack.emulator.base_url}/_emulator/calls").raise_for_status()
    again = call(stack, member, "POST", PORTAL, headers={"Idempotency-Key": "after-repair"})
    assert again.status == 200, again.body
    assert stack.stripe_calls(f"GET {CONFIGURATIONS}") == 1


def _config(id: str, *, ours: bool = True, active: bool = True, **on: bool) -> dict[str, Any]:
    features = {"payment_method_update": True, "invoice_history": True, **on}
    return {
        "id": id,
        "active": active,
        "metadata": {"payments_service": "billing_portal"} if ours else {},
        "features": {name: {"enabled": enabled} for name, enabled in features.items()},
    }


@pytest.mark.unit
def test_the_newest_configuration_of_ours_allowing_nothing_more_is_chosen() -> None:
    listed = [
        _config("bpc_default", ours=False),
        _config("bpc_switch", subscription_update=True),
        _config("bpc_off", active=False),
        _config("bpc_ok"),
        _config("bpc_older"),
    ]
    chosen = choose_configuration(PortalConfiguration.from_stripe(c) for c in listed)
    assert chosen is not None
    assert chosen.id == "bpc_ok"


@pytest.mark.unit
@pytest.mark.parametrize(
    "feature",
    ["subscription_update", "subscription_cancel", "subscription_pause", "customer_update"],
)
def test_a_configuration_with_any_other_feature_on_is_not_used(feature: str) -> None:
    config = PortalConfiguration.from_stripe(_config("bpc_1", **{feature: True}))
    assert config.forbidden_features == {feature}
    assert choose_configuration([config]) is None


@pytest.mark.unit
def test_a_container_checks_its_configuration_again_after_a_few_minutes() -> None:
    # Given a container that found the service's configuration
    configurations = [_config("bpc_ours")]
    listed: list[int] = []

    class Gateway:
        def portal_configurations(self) -> list[dict[str, Any]]:
            listed.append(1)
            return configurations

    now = [1000.0]
    cache = ConfigurationCache(clock=lambda: now[0])
    assert cache.get(Gateway()) == "bpc_ours"  # type: ignore[arg-type]

    # When the configuration is edited to allow plan changes: trusted until its check expires
    configurations[:] = [_config("bpc_ours", subscription_update=True)]
    now[0] += CONFIGURATION_TTL_SECONDS - 1
    assert cache.get(Gateway()) == "bpc_ours"  # type: ignore[arg-type]

    # Then once it has, the next click checks again and the portal closes
    now[0] += 1
    with pytest.raises(errors.UpstreamUnavailable) as closed:
        cache.get(Gateway())  # type: ignore[arg-type]
    assert closed.value.code == "portal_unavailable"
    assert len(listed) == 2
