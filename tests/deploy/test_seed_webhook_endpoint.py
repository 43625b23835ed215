"""`tools.seed_stripe --webhook-url`: one endpoint with exactly the handled events, its secret
shown once, idempotent, and a dry run that changes nothing (against the emulator)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from payments.webhooks import handled_event_types
from tests.deploy.conftest import STRIPE_KEY
from tools.seed_stripe import ensure_webhook_endpoint, main
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration

URL = "https://abc.execute-api.eu-west-1.amazonaws.com/v1/webhooks/stripe"


@pytest.fixture
def account(stripe_emulator: EmulatorHandle) -> Iterator[stripe.StripeClient]:
    stripe_emulator.reset()
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_emulator.base_url})


def endpoints(client: stripe.StripeClient) -> list[stripe.WebhookEndpoint]:
    return list(client.v1.webhook_endpoints.list().data)


def test_the_first_run_creates_one_endpoint_with_exactly_the_handled_events(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    # When the endpoint is set up in an account that has none
    result = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)

    # Then there is one, enabled, sending the worker's handled types on the service's API version
    [endpoint] = endpoints(account)
    assert result.action == "created"
    assert result.endpoint_id == endpoint.id
    assert endpoint.url == URL
    assert endpoint.status == "enabled"
    assert sorted(endpoint.enabled_events) == sorted(handled_event_types())
    assert endpoint.api_version == stripe.api_version
    # And its signing secret is handed over this once
    assert result.secret is not None
    assert result.secret.startswith("whsec_")


def test_running_again_changes_nothing_and_shows_no_secret(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    first = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)
    again = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)
    assert again.action == "unchanged"
    assert again.endpoint_id == first.endpoint_id
    assert again.secret is None
    assert len(endpoints(account)) == 1


def test_an_endpoint_with_other_events_gets_exactly_the_handled_ones(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    # Given an endpoint registered by hand with a stale list (one missing, one extra)
    stale = [e for e in handled_event_types() if e != "charge.refunded"] + ["invoice.paid"]
    created = account.v1.webhook_endpoints.create(
        params={"url": URL, "enabled_events": stale}  # type: ignore[typeddict-item]
    )

    # When the set-up runs, then the same endpoint now sends exactly the handled types
    result = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)
    [endpoint] = endpoints(account)
    assert (result.action, endpoint.id) == ("updated", created.id)
    assert sorted(endpoint.enabled_events) == sorted(handled_event_types())
    # and its secret, which the stack holds, is kept
    assert result.secret is None


def test_a_disabled_endpoint_is_enabled_again(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)
    [endpoint] = endpoints(account)
    account.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})

    assert ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url).action == "updated"
    assert account.v1.webhook_endpoints.retrieve(endpoint.id).status == "enabled"


def test_a_dry_run_creates_and_updates_nothing(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    # A dry run in an empty account says it would create, and creates nothing
    dry = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url, dry_run=True)
    assert (dry.action, dry.secret) == ("created", None)
    assert endpoints(account) == []

    # And on a stale endpoint it says it would update, and leaves the events as they are
    account.v1.webhook_endpoints.create(
        params={"url": URL, "enabled_events": ["charge.refunded"]}  # type: ignore[list-item]
    )
    dry = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url, dry_run=True)
    assert dry.action == "updated"
    assert endpoints(account)[0].enabled_events == ["charge.refunded"]


def test_endpoints_for_other_urls_are_left_alone(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    other = account.v1.webhook_endpoints.create(
        params={"url": "https://other.example/hook", "enabled_events": ["*"]}  # type: ignore[list-item]
    )
    ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)
    assert account.v1.webhook_endpoints.retrieve(other.id).enabled_events == ["*"]
    assert len(endpoints(account)) == 2


def test_a_second_endpoint_for_the_same_url_is_reported(
    account: stripe.StripeClient, stripe_emulator: EmulatorHandle
) -> None:
    for _ in range(2):
        account.v1.webhook_endpoints.create(
            params={"url": URL, "enabled_events": list(handled_event_types())}  # type: ignore[typeddict-item]
        )
    result = ensure_webhook_endpoint(STRIPE_KEY, URL, stripe_emulator.base_url)
    assert len(result.notes) == 1
    assert "has the same URL" in result.notes[0]


def test_the_command_prints_the_secret_once_and_sets_prices_up_too(
    account: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.base_url)

    assert main(["--webhook-url", URL]) == 0
    first = capsys.readouterr().out
    assert main(["--webhook-url", URL]) == 0
    second = capsys.readouterr().out

    assert first.count("whsec_") == 1
    assert "whsec_" not in second
    assert "already sends every handled event" in second
    assert "Stripe already matches the catalog." in second
    assert len(account.v1.prices.list().data) == 5


def test_the_command_dry_run_changes_nothing(
    account: stripe.StripeClient,
    stripe_emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.base_url)

    assert main(["--webhook-url", URL, "--dry-run"]) == 0

    out = capsys.readouterr().out
    assert f"webhook endpoint: would create for {URL}" in out
    assert endpoints(account) == []
    assert account.v1.prices.list().data == []
