"""`tools.seed_stripe`: the Billing Portal's configuration of the service, card updates and
invoices only, created once, repaired when edited or deactivated, left alone otherwise, with an
idempotency key on every POST (against the emulator)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from payments.billing_portal import PortalConfiguration
from tests.deploy.conftest import STRIPE_KEY
from tools.seed_stripe import ensure_portal_configuration, main
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def account(stripe_emulator: EmulatorHandle) -> Iterator[stripe.StripeClient]:
    stripe_emulator.reset()
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_emulator.base_url})


def configurations(client: stripe.StripeClient) -> list[PortalConfiguration]:
    listed = client.v1.billing_portal.configurations.list(params={"limit": 100}).data
    return [PortalConfiguration.from_stripe(c.to_dict(recursive=True)) for c in listed]


def last_key(stripe_emulator: EmulatorHandle) -> str:
    """The idempotency key of the request behind the newest configuration event: the seed's
    own names its intent (stripe-python would invent a bare UUID for a POST it retries)."""
    [event, *_] = [
        e
        for e in stripe_emulator.emulator.store.all("event")
        if e["type"].startswith("billing_portal.configuration.")
    ]
    return str((event["request"] or {}).get("idempotency_key"))


def test_the_first_run_creates_one_configuration_allowing_card_and_invoices_only(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    result = ensure_portal_configuration(STRIPE_KEY, stripe_emulator.base_url)

    [config] = configurations(account)
    assert result.action == "created"
    assert result.configuration_id == config.id
    assert config.is_ours
    assert config.active
    assert config.enabled_features == {"payment_method_update", "invoice_history"}
    assert last_key(stripe_emulator).startswith("seed-portal-configuration-")


def test_running_again_changes_nothing(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    first = ensure_portal_configuration(STRIPE_KEY, stripe_emulator.base_url)
    again = ensure_portal_configuration(STRIPE_KEY, stripe_emulator.base_url)

    assert again.action == "unchanged"
    assert again.configuration_id == first.configuration_id
    assert len(configurations(account)) == 1


@pytest.mark.parametrize(
    "edit",
    [
        {"features": {"subscription_cancel": {"enabled": True}}},
        {"features": {"subscription_pause": {"enabled": True}}},
        {"features": {"invoice_history": {"enabled": False}}},
        {"active": False},
    ],
)
def test_an_edited_or_deactivated_configuration_is_put_back(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle, edit: dict[str, Any]
) -> None:
    first = ensure_portal_configuration(STRIPE_KEY, stripe_emulator.base_url)
    assert first.configuration_id is not None
    account.v1.billing_portal.configurations.update(first.configuration_id, params=edit)

    repaired = ensure_portal_configuration(STRIPE_KEY, stripe_emulator.base_url)

    [config] = configurations(account)
    assert repaired.action == "updated"
    assert config.id == first.configuration_id
    assert config.usable
    assert not config.missing_features
    assert last_key(stripe_emulator).startswith("seed-portal-configuration-")


def test_the_accounts_other_configurations_are_left_alone(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    # Given the Dashboard's default configuration, with plan changes on
    customer = account.v1.customers.create()
    default = account.v1.billing_portal.sessions.create(params={"customer": customer.id})
    account.v1.billing_portal.configurations.update(
        default.configuration,
        params={"features": {"subscription_update": {"enabled": True}}},
    )

    ensure_portal_configuration(STRIPE_KEY, stripe_emulator.base_url)

    by_id = {c.id: c for c in configurations(account)}
    assert len(by_id) == 2
    assert "subscription_update" in by_id[default.configuration].enabled_features


def test_a_dry_run_creates_nothing(
    account: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.base_url)

    assert main(["--dry-run"]) == 0

    assert configurations(account) == []
    assert "billing portal configuration: would create" in capsys.readouterr().out


def test_the_command_sets_up_the_portal_with_the_prices(
    account: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.base_url)

    assert main([]) == 0

    [config] = configurations(account)
    assert f"billing portal configuration {config.id} created" in capsys.readouterr().out
    assert all(p.active for p in account.v1.prices.list(params={"limit": 100}).data)
