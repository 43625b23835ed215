"""Fixtures for the webhook pipeline: moto SQS, the Make.com receiver, worker ports on the real
Postgres, and helpers that build the events Lambda hands to each function."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from payments.adapters.make import MakeWebhook
from payments.adapters.postgres_store import PostgresStore
from payments.adapters.queue import get_event_queue, sqs_client
from payments.webhook_processing import RefundIssuer, WorkerPorts
from tests.fakes.lambda_context import FakeLambdaContext
from tools.devserver.events import http_event
from tools.local.make_receiver import MakeReceiverServer, start_make_receiver
from tools.local.sqs import LocalSqs, start_sqs

MAKE_KEY = "make_test_key"


@pytest.fixture(scope="session")
def moto_sqs() -> Iterator[LocalSqs]:
    """moto's SQS served over HTTP: the webhook signs its own requests, as it does in AWS."""
    local = start_sqs()
    yield local
    local.stop()


@pytest.fixture
def sqs_queue(moto_sqs: LocalSqs) -> Iterator[tuple[Any, str]]:
    """A moto SQS queue: ``(client, queue_url)``; ``AWS_ENDPOINT_URL`` points at it."""
    get_event_queue.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_sqs.endpoint_url)
        client = sqs_client(moto_sqs.endpoint_url)
        url = client.create_queue(QueueName=f"webhooks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        yield client, url
    get_event_queue.cache_clear()


def receive_all(client: Any, queue_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        batch = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


@pytest.fixture
def make_receiver() -> Iterator[MakeReceiverServer]:
    server = start_make_receiver(api_key=MAKE_KEY)
    yield server
    server.stop()


def no_stripe() -> RefundIssuer:
    raise AssertionError("this test must not call Stripe")


def make_ports(
    url: str, receiver: MakeReceiverServer, refunds: Callable[[], RefundIssuer] = no_stripe
) -> WorkerPorts:
    return WorkerPorts(
        store=PostgresStore(url),
        make=MakeWebhook(
            receiver.url + "/hook", receiver.api_key, max_retries=1, backoff_base_seconds=0.01
        ),
        refunds=refunds,
    )


@pytest.fixture
def ports(db: str, make_receiver: MakeReceiverServer) -> Iterator[WorkerPorts]:
    worker = make_ports(db, make_receiver)
    yield worker
    worker.store.close()  # type: ignore[attr-defined]


def sqs_record(body: str, *, event_id: str = "", receive_count: int = 1) -> dict[str, Any]:
    """One record of the SQS event Lambda passes to the worker."""
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1764000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1764000000001",
        },
        "messageAttributes": {
            "stripe_event_id": {
                "stringValue": event_id,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:payments-webhook-events-dev",
        "awsRegion": "us-east-1",
    }


def sqs_event(*stripe_events: dict[str, Any] | str) -> dict[str, Any]:
    records = []
    for item in stripe_events:
        if isinstance(item, str):
            records.append(sqs_record(item))
        else:
            records.append(sqs_record(json.dumps(item), event_id=item["id"]))
    return {"Records": records}


def webhook_event(body: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return http_event(
        method="POST",
        path="/v1/webhooks/stripe",
        route_key="POST /v1/webhooks/stripe",
        headers=[("Content-Type", "application/json; charset=utf-8"), *headers],
        body=body.encode(),
    )


def context(name: str = "WebhookWorkerFunction") -> FakeLambdaContext:
    return FakeLambdaContext(name, timeout_seconds=30)


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], str]]:
    """The service's log output as it would be written (structured, scrubbed)."""
    import io
    import logging

    from payments.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield stream.getvalue
    logger.removeHandler(handler)
