"""The pipeline against the Stripe emulator: events Stripe's way (signed deliveries, the events
API), product-switch refunds through the real Stripe client, and the operator tools."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from moto import mock_aws

from functions.webhook_worker import app as worker_app
from payments.adapters.queue import EventQueue, get_event_queue, sqs_client
from payments.adapters.stripe_service import StripeService
from payments.webhook_processing import WorkerPorts
from tests.webhooks.conftest import context, make_ports, receive_all, rows, sqs_event
from tools import recover_events, redrive_dlq
from tools.devserver.server import ApiServer
from tools.local.make_receiver import MakeReceiverServer
from tools.local.sqs import LocalSqs, SqsPoller, create_queues, start_sqs
from tools.stripe_emulator import EmulatorHandle, start_emulator

pytestmark = pytest.mark.integration

API_KEY = "sk_test_webhook_pipeline"
SECRET = "whsec_test_pipeline_secret"


@pytest.fixture(scope="module")
def running_emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(port=0, auto_deliver=False, webhook_secret=SECRET) as handle:
        yield handle


@pytest.fixture
def emu(running_emulator: EmulatorHandle) -> EmulatorHandle:
    running_emulator.flush_webhooks()
    running_emulator.reset()
    running_emulator.emulator.webhooks.configure(url=None, secret=SECRET, auto_deliver=False)
    return running_emulator


@pytest.fixture
def client(emu: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.base_url}, max_network_retries=0)


@pytest.fixture(scope="module")
def local_sqs() -> Iterator[LocalSqs]:
    local = start_sqs()
    yield local
    local.stop()


def buy(
    client: stripe.StripeClient, emu: EmulatorHandle, product: str, amount: int, **extra: str
) -> Any:
    """A member pays for ``product`` on the emulator's hosted checkout; the paid session."""
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": amount, "product_data": {"name": product}}
    )
    metadata = {"member_id": "mem_switcher", "product": product, **extra}
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://shop.test/f5?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://shop.test/f4",
            "client_reference_id": "mem_switcher",
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
    )
    status, body = emu.emulator.helper(
        "POST", f"/_emulator/checkout/sessions/{session.id}/pay", {"outcome": "success"}
    )
    assert status == 200, body
    return client.v1.checkout.sessions.retrieve(session.id)


def events_of(client: stripe.StripeClient, event_type: str) -> list[dict[str, Any]]:
    """The emulator's events of one type, oldest first, as the JSON Stripe sends."""
    listed = client.v1.events.list(params={"type": event_type, "limit": 100})
    return [json.loads(str(e)) for e in reversed(listed.data)]


def test_a_switch_whose_original_was_already_refunded_completes_without_a_retry(
    db: str, client: stripe.StripeClient, emu: EmulatorHandle, make_receiver: MakeReceiverServer
) -> None:
    # Given a paid original that an admin refunded in full before the switch was paid
    ports = make_ports(db, make_receiver)
    stripe_service = StripeService(API_KEY, api_base=emu.base_url, retry_base_seconds=0.01)
    ports = WorkerPorts(store=ports.store, make=ports.make, refunds=lambda: stripe_service)
    original = buy(client, emu, "business_plan_builder", 9900)
    [first] = events_of(client, "checkout.session.completed")
    assert worker_app.handle_batch(sqs_event(first), context(), ports)["batchItemFailures"] == []
    client.v1.refunds.create(params={"payment_intent": original.payment_intent})

    # When the switch's new session is paid
    buy(client, emu, "website_audit_feedback", 7900, switch_from=original.payment_intent)
    second = events_of(client, "checkout.session.completed")[-1]
    response = worker_app.handle_batch(sqs_event(second), context(), ports)

    # Then the message succeeds (no retries into the dead-letter queue), no second refund
    assert response["batchItemFailures"] == []
    assert len(client.v1.refunds.list(params={"payment_intent": original.payment_intent}).data) == 1
    assert rows(db, "select status from outbox where kind = 'switch_refund'") == [("sent",)]


def test_a_product_switch_refunds_the_original_once_and_marks_it_switched(
    db: str, client: stripe.StripeClient, emu: EmulatorHandle, make_receiver: MakeReceiverServer
) -> None:
    # Given a paid original purchase
    ports = make_ports(db, make_receiver)
    stripe_service = StripeService(API_KEY, api_base=emu.base_url, retry_base_seconds=0.01)
    ports = WorkerPorts(store=ports.store, make=ports.make, refunds=lambda: stripe_service)
    original = buy(client, emu, "business_plan_builder", 9900)
    [first] = events_of(client, "checkout.session.completed")
    assert worker_app.handle_batch(sqs_event(first), context(), ports)["batchItemFailures"] == []

    # When the member pays for another track with switch_from = the original payment
    buy(client, emu, "website_audit_feedback", 7900, switch_from=original.payment_intent)
    second = events_of(client, "checkout.session.completed")[-1]
    response = worker_app.handle_batch(sqs_event(second, second), context(), ports)

    # Then Stripe refunded the original once, with the reason and the note
    assert response["batchItemFailures"] == []
    [refund] = client.v1.refunds.list(params={"payment_intent": original.payment_intent}).data
    assert (refund.amount, refund.reason) == (9900, "requested_by_customer")
    assert refund.metadata["note"] == "product switch to website_audit_feedback"
    # ... the original purchase is switched, the refund recorded with its note
    [(status,)] = rows(
        db, "select status from purchases where payment_intent_id = %s", original.payment_intent
    )
    assert status == "switched"
    assert rows(db, "select note, requested_by from refunds") == [
        ("product switch to website_audit_feedback", "product_switch")
    ]
    # ... and Make.com got both tracks
    assert [p["product"] for p in make_receiver.received] == [
        "business_plan_builder",
        "website_audit_feedback",
    ]

    # When Stripe's own refund events follow
    late = events_of(client, "refund.created") + events_of(client, "charge.refunded")
    assert worker_app.handle_batch(sqs_event(*late), context(), ports)["batchItemFailures"] == []

    # Then the original stays switched and is counted as refunded
    assert rows(
        db,
        "select status, amount_refunded from purchases where payment_intent_id = %s",
        original.payment_intent,
    ) == [("switched", 9900)]
    ports.store.close()  # type: ignore[attr-defined]


def test_signed_deliveries_flow_from_stripe_to_make_once(
    db: str,
    env: pytest.MonkeyPatch,
    client: stripe.StripeClient,
    emu: EmulatorHandle,
    local_sqs: LocalSqs,
    make_receiver: MakeReceiverServer,
) -> None:
    # Given the webhook function served locally, in front of a local queue
    queue_url, _dlq_url = create_queues(
        local_sqs.endpoint_url, f"pipeline-{uuid.uuid4().hex[:8]}", visibility_timeout=0
    )
    env.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    env.setenv("WEBHOOK_QUEUE_URL", queue_url)
    env.setenv("AWS_ENDPOINT_URL", local_sqs.endpoint_url)
    get_event_queue.cache_clear()
    api = ApiServer(("127.0.0.1", 0), static_root=None)
    api.start_in_thread()
    emu.emulator.webhooks.configure(url=f"{api.url}/v1/webhooks/stripe", auto_deliver=True)
    ports = make_ports(db, make_receiver)
    poller = SqsPoller(
        local_sqs.endpoint_url, queue_url, lambda e, c: worker_app.handle_batch(e, c, ports)
    )
    try:
        # When a member pays, and Stripe then delivers the completion a second time
        session = buy(client, emu, "social_media_email_campaign", 4900)
        assert emu.flush_webhooks()
        [completed] = events_of(client, "checkout.session.completed")
        emu.emulator.helper("POST", f"/_emulator/events/{completed['id']}/redeliver", {})
        assert emu.flush_webhooks()
        poller.drain(timeout=20)
    finally:
        api.shutdown()
        api.server_close()
        get_event_queue.cache_clear()

    # Then every delivery was accepted, the purchase is paid and Make.com was called once
    summary = emu.emulator.webhooks.summary()
    assert summary["failed"] == 0
    [(status,)] = rows(
        db, "select status from purchases where checkout_session_id = %s", session.id
    )
    assert status == "paid"
    assert [p["idempotency_key"] for p in make_receiver.received] == [f"add_project:{session.id}"]
    ports.store.close()  # type: ignore[attr-defined]


def test_recover_events_queues_what_stripe_could_not_deliver(
    client: stripe.StripeClient,
    emu: EmulatorHandle,
    local_sqs: LocalSqs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given events whose deliveries all failed (the endpoint was down)
    emu.emulator.webhooks.configure(
        url="http://127.0.0.1:9/down", auto_deliver=True, max_attempts=1
    )
    buy(client, emu, "business_plan_builder", 9900)
    assert emu.flush_webhooks()
    undelivered = client.v1.events.list(params={"delivery_success": False}).data
    assert undelivered
    queue_url, _ = create_queues(local_sqs.endpoint_url, f"recover-{uuid.uuid4().hex[:8]}")
    sqs = sqs_client(local_sqs.endpoint_url)
    queue = EventQueue(queue_url, sqs)

    # When the operator runs a dry run, then the recovery
    dry = recover_events.recover(client, queue, days=30, dry_run=True)
    assert receive_all(sqs, queue_url) == []
    queued = recover_events.recover(client, queue, days=30)

    # Then every undelivered event is on the queue, as the webhook would have queued it
    assert dry == queued == len(undelivered)
    messages = receive_all(sqs, queue_url)
    assert sorted(m["MessageAttributes"]["stripe_event_id"]["StringValue"] for m in messages) == (
        sorted(e.id for e in undelivered)
    )
    assert all(json.loads(m["Body"])["object"] == "event" for m in messages)
    assert f"queued {queued} undelivered event(s)" in capsys.readouterr().out


def test_redrive_moves_dead_letters_back_and_is_idempotent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with mock_aws():
        # Given two events parked in the dead-letter queue
        sqs = sqs_client()
        dlq = sqs.create_queue(QueueName="events-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue = sqs.create_queue(
            QueueName="events",
            Attributes={
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}
                )
            },
        )["QueueUrl"]
        for n in range(2):
            EventQueue(dlq, sqs).send_event(
                json.dumps({"id": f"evt_{n}"}), event_id=f"evt_{n}", event_type="charge.refunded"
            )

        # When the operator runs a dry run, then the redrive, then the redrive again
        found = redrive_dlq.dead_letter_queue_url(sqs, queue)
        dry = redrive_dlq.redrive(sqs, queue, found, dry_run=True)
        moved = redrive_dlq.redrive(sqs, queue, found)
        again = redrive_dlq.redrive(sqs, queue, found)

        # Then the dry run moved nothing, the redrive moved both with attributes, once
        assert (found, dry, moved, again) == (dlq, 2, 2, 0)
        back = receive_all(sqs, queue)
        assert sorted(m["MessageAttributes"]["stripe_event_id"]["StringValue"] for m in back) == [
            "evt_0",
            "evt_1",
        ]
        assert receive_all(sqs, dlq) == []
    assert "moved 2 message(s)" in capsys.readouterr().out
