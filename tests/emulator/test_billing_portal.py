"""Customer portal configurations and sessions, as Stripe serves them at the pinned version."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.emulator.conftest import API_KEY
from tools.stripe_emulator import EmulatorHandle

pytestmark = pytest.mark.integration

CARD_AND_INVOICES = {
    "payment_method_update": {"enabled": True},
    "invoice_history": {"enabled": True},
}


def _enabled(config: stripe.billing_portal.Configuration) -> list[str]:
    features = config.to_dict(recursive=True)["features"]
    return sorted(name for name, feature in features.items() if feature["enabled"])


def test_a_new_configuration_turns_on_only_the_features_it_names(
    client: stripe.StripeClient,
) -> None:
    # When a configuration is created with card updates and invoice history
    config = client.v1.billing_portal.configurations.create(
        params={"features": CARD_AND_INVOICES, "metadata": {"owner": "tests"}, "name": "Cards"}
    )

    # Then those two are on and everything else off; it is active, named, and not the default
    assert config.id.startswith("bpc_")
    assert _enabled(config) == ["invoice_history", "payment_method_update"]
    assert config.active is True
    assert config.is_default is False
    assert config.livemode is False
    assert config.name == "Cards"
    assert config.metadata.to_dict() == {"owner": "tests"}
    assert client.v1.billing_portal.configurations.retrieve(config.id).id == config.id


def test_features_are_required_like_stripe(emu: EmulatorHandle) -> None:
    answer = httpx.post(
        f"{emu.base_url}/v1/billing_portal/configurations",
        headers={"Authorization": f"Bearer {API_KEY}"},
        data={"name": "no features"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "features"


def test_an_update_changes_only_what_it_names(client: stripe.StripeClient) -> None:
    config = client.v1.billing_portal.configurations.create(params={"features": CARD_AND_INVOICES})

    updated = client.v1.billing_portal.configurations.update(
        config.id,
        params={"features": {"subscription_cancel": {"enabled": True, "mode": "immediately"}}},
    )

    assert _enabled(updated) == ["invoice_history", "payment_method_update", "subscription_cancel"]
    assert updated.features.subscription_cancel.mode == "immediately"
    assert updated.features.subscription_cancel.proration_behavior == "none"


def test_the_list_filters_on_active_and_default_newest_first(
    client: stripe.StripeClient,
) -> None:
    older = client.v1.billing_portal.configurations.create(params={"features": CARD_AND_INVOICES})
    newer = client.v1.billing_portal.configurations.create(params={"features": CARD_AND_INVOICES})
    client.v1.billing_portal.configurations.update(older.id, params={"active": False})

    active = client.v1.billing_portal.configurations.list(params={"active": True}).data
    inactive = client.v1.billing_portal.configurations.list(params={"active": False}).data
    everything = client.v1.billing_portal.configurations.list().data

    assert newer.id in [c.id for c in active]
    assert older.id not in [c.id for c in active]
    assert [c.id for c in inactive] == [older.id]
    assert [c.id for c in everything][:2] == [newer.id, older.id]
    assert client.v1.billing_portal.configurations.list(params={"is_default": True}).data == []


def test_a_session_uses_the_configuration_it_names(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    config = client.v1.billing_portal.configurations.create(params={"features": CARD_AND_INVOICES})

    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "configuration": config.id}
    )

    assert session.configuration == config.id
    page = httpx.get(session.url).text
    assert "data-feature=payment_method_update" in page
    assert "data-feature=subscription_update" not in page


def test_a_session_without_a_configuration_uses_the_one_default(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create()

    first = client.v1.billing_portal.sessions.create(params={"customer": customer.id})
    second = client.v1.billing_portal.sessions.create(params={"customer": customer.id})

    assert first.configuration == second.configuration
    [default] = client.v1.billing_portal.configurations.list(params={"is_default": True}).data
    assert default.id == first.configuration


def test_an_unknown_or_inactive_configuration_is_refused(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    config = client.v1.billing_portal.configurations.create(params={"features": CARD_AND_INVOICES})
    client.v1.billing_portal.configurations.update(config.id, params={"active": False})

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.billing_portal.sessions.create(
            params={"customer": customer.id, "configuration": "bpc_missing"}
        )
    with pytest.raises(stripe.InvalidRequestError) as inactive:
        client.v1.billing_portal.sessions.create(
            params={"customer": customer.id, "configuration": config.id}
        )

    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert missing.value.param == "configuration"
    assert inactive.value.http_status == 400
    assert inactive.value.param == "configuration"


def test_a_retried_create_with_the_same_key_makes_one_configuration(
    client: stripe.StripeClient,
) -> None:
    params: stripe.params.billing_portal.ConfigurationCreateParams = {"features": CARD_AND_INVOICES}
    first = client.v1.billing_portal.configurations.create(
        params=params, options={"idempotency_key": "portal-config-once"}
    )
    second = client.v1.billing_portal.configurations.create(
        params=params, options={"idempotency_key": "portal-config-once"}
    )
    assert first.id == second.id
