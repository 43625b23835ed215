"""The emulator's /v1/webhook_endpoints, driven by the unchanged stripe client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.deploy.conftest import STRIPE_KEY
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def client(stripe_emulator: EmulatorHandle) -> Iterator[stripe.StripeClient]:
    stripe_emulator.reset()
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_emulator.base_url})


def _create(client: stripe.StripeClient, **params: object) -> stripe.WebhookEndpoint:
    return client.v1.webhook_endpoints.create(
        params={"url": "https://site.example/hook", "enabled_events": ["charge.refunded"], **params}  # type: ignore[typeddict-item]
    )


def test_the_secret_is_in_the_create_answer_only(client: stripe.StripeClient) -> None:
    created = _create(client, description="ours")
    assert created.id.startswith("we_")
    assert (created.status, created.livemode, created.description) == ("enabled", False, "ours")
    assert created.secret is not None
    assert created.secret.startswith("whsec_")
    retrieved = client.v1.webhook_endpoints.retrieve(created.id)
    assert "secret" not in retrieved
    assert retrieved.url == "https://site.example/hook"


def test_update_changes_events_url_and_status(client: stripe.StripeClient) -> None:
    created = _create(client)
    updated = client.v1.webhook_endpoints.update(
        created.id,
        params={
            "url": "https://site.example/other",
            "enabled_events": ["*"],  # type: ignore[list-item]
            "disabled": True,
        },
    )
    assert (updated.url, updated.enabled_events, updated.status) == (
        "https://site.example/other",
        ["*"],
        "disabled",
    )
    enabled = client.v1.webhook_endpoints.update(created.id, params={"disabled": False})
    assert enabled.status == "enabled"


def test_list_is_newest_first_and_paginates(client: stripe.StripeClient) -> None:
    ids = [_create(client).id for _ in range(3)]
    page = client.v1.webhook_endpoints.list(params={"limit": 2})
    assert [e.id for e in page.data] == [ids[2], ids[1]]
    assert page.has_more
    rest = client.v1.webhook_endpoints.list(params={"starting_after": ids[1]})
    assert [e.id for e in rest.data] == [ids[0]]


def test_delete_answers_the_deleted_shape_and_the_endpoint_is_gone(
    client: stripe.StripeClient,
) -> None:
    created = _create(client)
    deleted = client.v1.webhook_endpoints.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.webhook_endpoints.retrieve(created.id)
    assert missing.value.code == "resource_missing"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"url": "not a url"}, "url"),
        ({"enabled_events": ["no.such.event"]}, "enabled_events[0]"),
    ],
)
def test_invalid_parameters_are_refused_like_stripe(
    client: stripe.StripeClient, params: dict[str, object], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _create(client, **params)
    assert refused.value.param == param
    assert client.v1.webhook_endpoints.list().data == []
