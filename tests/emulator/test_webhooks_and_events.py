"""Webhook signing and delivery, redelivery controls, and the events API."""

from __future__ import annotations

import json

import pytest
import stripe

from tests.emulator.conftest import WEBHOOK_SECRET, Helpers, WebhookReceiver, paid_payment
from tools.stripe_emulator import EmulatorHandle

pytestmark = pytest.mark.integration


def test_delivered_webhook_is_accepted_by_construct_event(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given a payment that produced events
    session, _intent = paid_payment(client, helpers)

    # When the deliveries are flushed to the endpoint
    helpers.flush()

    # Then the completed-session webhook verifies with the endpoint secret
    delivery = next(
        d for d in receiver.received() if d.event()["type"] == "checkout.session.completed"
    )
    event = stripe.Webhook.construct_event(
        delivery.body.decode(), delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
    )
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == session.id
    assert event.id.startswith("evt_")
    assert event.object == "event"
    assert event.api_version == "2026-10-28.endive"
    assert event.livemode is False
    assert delivery.headers["Stripe-Signature"].startswith("t=")
    assert ",v1=" in delivery.headers["Stripe-Signature"]


def test_tampered_webhook_body_is_rejected_by_construct_event(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    paid_payment(client, helpers)
    helpers.flush()
    delivery = receiver.received()[-1]
    tampered = delivery.body.decode().replace('"livemode": false', '"livemode": true', 1)

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            tampered, delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
        )
    assert tampered != delivery.body.decode()


def test_event_from_an_api_request_records_the_request_and_idempotency_key(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    created = client.v1.customers.create(
        params={"email": "e@example.com"}, options={"idempotency_key": "create-cus-1"}
    )
    helpers.flush()

    event = client.v1.events.list(params={"type": "customer.created"}).data[0]

    assert event.data.object.id == created.id
    assert event.request.id == created.last_response.request_id
    assert event.request.idempotency_key == "create-cus-1"
    assert event.pending_webhooks == 0


def test_events_snapshot_the_object_at_the_time_of_the_change(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"name": "Before"})
    client.v1.customers.update(customer.id, params={"name": "After"})

    created = client.v1.events.list(params={"type": "customer.created"}).data[0]
    updated = client.v1.events.list(params={"type": "customer.updated"}).data[0]

    assert created.data.object.name == "Before"
    assert updated.data.object.name == "After"
    assert updated.data.previous_attributes.to_dict() == {"name": "Before"}


def test_endpoint_answering_500_is_retried_then_listed_as_undelivered(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver, emu: EmulatorHandle
) -> None:
    # Given an endpoint that fails every request
    receiver.status = 500

    # When one event is created and delivery is flushed
    customer = client.v1.customers.create(params={"email": "retry@example.com"})
    helpers.flush()

    # Then it was tried exactly max_attempts times and is reported as not delivered
    assert len(receiver.received()) == 3
    undelivered = client.v1.events.list(params={"delivery_success": False})
    delivered = client.v1.events.list(params={"delivery_success": True})
    assert [e.data.object.id for e in undelivered.data] == [customer.id]
    assert undelivered.data[0].pending_webhooks == 1
    assert delivered.data == []

    # And once the endpoint recovers, a redelivery succeeds
    receiver.status = 200
    helpers.post(f"/events/{undelivered.data[0].id}/redeliver")
    helpers.flush()
    assert client.v1.events.list(params={"delivery_success": False}).data == []
    history = helpers.get(f"/events/{undelivered.data[0].id}/deliveries")
    assert [a["status"] for a in history["attempts"]] == [500, 500, 500, 200]


def test_manual_delivery_in_reverse_with_duplicates(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given events held back instead of delivered
    helpers.post("/webhook-endpoint", {"auto_deliver": False})
    first = client.v1.customers.create(params={"name": "1"})
    second = client.v1.customers.create(params={"name": "2"})
    helpers.flush()
    assert receiver.received() == []
    ids = [e.id for e in reversed(client.v1.events.list().data)]

    # When they are delivered in reverse order, each one twice
    queued = helpers.post("/events/deliver", {"ids": ids, "order": "reverse", "duplicates": 1})
    helpers.flush()

    # Then the endpoint sees the later event first and every event twice
    assert queued["queued"] == 4
    objects = [d.event()["data"]["object"]["id"] for d in receiver.received()]
    assert objects == [second.id, first.id, second.id, first.id]


def test_shuffled_delivery_is_repeatable_with_a_seed(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    helpers.post("/webhook-endpoint", {"auto_deliver": False})
    for i in range(6):
        client.v1.customers.create(params={"name": str(i)})
    ids = [e.id for e in client.v1.events.list().data]

    one = helpers.post("/events/deliver", {"ids": ids, "order": "shuffle", "seed": 7})
    two = helpers.post("/events/deliver", {"ids": ids, "order": "shuffle", "seed": 7})
    helpers.flush()

    assert one["order"] == two["order"]
    assert sorted(one["order"]) == sorted(ids)
    assert one["order"] != ids


def test_endpoint_can_be_reconfigured_at_run_time(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    helpers.post("/webhook-endpoint", {"secret": "whsec_rotated"})

    client.v1.customers.create(params={"name": "x"})
    helpers.flush()

    delivery = receiver.received()[-1]
    event = stripe.Webhook.construct_event(
        delivery.body.decode(), delivery.headers["Stripe-Signature"], "whsec_rotated"
    )
    assert event.type == "customer.created"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            delivery.body.decode(), delivery.headers["Stripe-Signature"], WEBHOOK_SECRET
        )


def test_events_are_filtered_by_type_and_created_and_paginated(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    helpers.post("/clock", {"advance_seconds": -3600})
    client.v1.customers.create(params={"name": "an hour ago"})
    helpers.post("/clock", {"advance_seconds": 3600})
    recent = [client.v1.customers.create(params={"name": f"now {i}"}) for i in range(3)]
    now = helpers.get("/clock")["now"]
    client.v1.products.create(params={"name": "p"})

    since = client.v1.events.list(params={"type": "customer.created", "created": {"gte": now - 60}})
    page_one = client.v1.events.list(params={"type": "customer.*", "limit": 2})
    page_two = client.v1.events.list(
        params={"type": "customer.*", "limit": 2, "starting_after": page_one.data[-1].id}
    )

    assert [e.data.object.id for e in since.data] == [c.id for c in reversed(recent)]
    assert [len(page_one.data), len(page_two.data)] == [2, 2]
    assert page_one.has_more
    assert not page_two.has_more
    retrieved = client.v1.events.retrieve(page_two.data[0].id)
    assert retrieved.type == "customer.created"


def test_flush_reports_delivery_counts(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    client.v1.customers.create(params={"name": "a"})
    client.v1.customers.create(params={"name": "b"})

    result = helpers.flush()

    assert result["delivered"] == 2
    assert result["failed"] == 0
    assert result["queued"] == 0
    assert len(receiver.received()) == 2
    assert json.loads(receiver.received()[0].body)["type"] == "customer.created"
