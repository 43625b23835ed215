"""The local SQS poller behaves like Lambda's SQS event source mapping on moto."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
from typing import Any

import pytest

from tests.tools.conftest import QueueFactory
from tools.devserver.lambda_host import FakeLambdaContext
from tools.local.sqs import (
    LocalSqs,
    SqsPoller,
    build_sqs_event,
    failed_message_ids,
    sqs_client,
    start_sqs,
)


class RecordingHandler:
    """A Lambda handler that records what it saw and fails the bodies it is told to."""

    def __init__(self, fail_bodies: frozenset[str] = frozenset(), *, raises: bool = False) -> None:
        self.fail_bodies = fail_bodies
        self.raises = raises
        self.batches: list[list[dict[str, Any]]] = []
        self.contexts: list[Any] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.batches.append(event["Records"])
        self.contexts.append(context)
        if self.raises:
            raise RuntimeError("handler crashed")
        return {
            "batchItemFailures": [
                {"itemIdentifier": record["messageId"]}
                for record in event["Records"]
                if record["body"] in self.fail_bodies
            ]
        }

    def bodies(self) -> list[list[str]]:
        return [[record["body"] for record in batch] for batch in self.batches]


def send(local_sqs: LocalSqs, queue_url: str, *bodies: str) -> None:
    local_sqs.client().send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)],
    )


def depth(local_sqs: LocalSqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = local_sqs.client().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


@pytest.mark.integration
def test_queues_redrive_to_the_dlq_after_five_receives(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    queue_url, dlq_url = make_queues(visibility_timeout=2)
    client = local_sqs.client()

    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 5,
    }
    assert attributes["VisibilityTimeout"] == "2"


@pytest.mark.integration
def test_handler_receives_a_lambda_sqs_event_and_context(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given a message with a string and a binary attribute
    queue_url, _ = make_queues()
    local_sqs.client().send_message(
        QueueUrl=queue_url,
        MessageBody='{"id": "evt_1"}',
        MessageAttributes={
            "stripe_event_type": {"DataType": "String", "StringValue": "invoice.paid"},
            "raw": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
        },
    )
    handler = RecordingHandler()

    # When the poller delivers it
    handled = SqsPoller(local_sqs.endpoint_url, queue_url, handler, wait_seconds=0).poll_once()

    # Then the handler got one record shaped as Lambda builds it
    assert handled == 1
    (record,) = handler.batches[0]
    queue_arn = local_sqs.client().get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert record["body"] == '{"id": "evt_1"}'
    assert record["md5OfBody"] == hashlib.md5(b'{"id": "evt_1"}').hexdigest()  # noqa: S324
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["messageId"]
    assert record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["messageAttributes"]["stripe_event_type"] == {
        "stringValue": "invoice.paid",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["raw"]["binaryValue"] == "AQI="
    # And a context with what Powertools reads
    context = handler.contexts[0]
    assert context.function_name == "local-sqs-consumer"
    assert context.invoked_function_arn.startswith("arn:aws:lambda:us-east-1:")
    assert context.memory_limit_in_mb == 512
    assert context.aws_request_id
    assert 0 < context.get_remaining_time_in_millis() <= 30_000


@pytest.mark.integration
def test_partial_batch_failure_deletes_the_others_and_keeps_the_failed_one_in_flight(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given three messages and a handler that fails "b"
    queue_url, _ = make_queues(visibility_timeout=30)
    send(local_sqs, queue_url, "a", "b", "c")
    handler = RecordingHandler(frozenset({"b"}))

    # When one batch is handled
    handled = SqsPoller(local_sqs.endpoint_url, queue_url, handler, wait_seconds=0).poll_once()

    # Then "a" and "c" are gone and "b" waits for its visibility timeout
    assert handled == 3
    assert sorted(handler.bodies()[0]) == ["a", "b", "c"]
    assert depth(local_sqs, queue_url) == (0, 1)


@pytest.mark.integration
def test_failed_message_is_redelivered_after_the_visibility_timeout(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given three messages, a 1 s visibility timeout and a handler failing "b" once
    queue_url, _ = make_queues(visibility_timeout=1)
    send(local_sqs, queue_url, "a", "b", "c")
    handler = RecordingHandler(frozenset({"b"}))
    poller = SqsPoller(local_sqs.endpoint_url, queue_url, handler)
    poller.poll_once()
    handler.fail_bodies = frozenset()

    # When the poller drains the queue
    poller.drain(timeout=10)

    # Then only "b" came back, as a second receive
    assert [sorted(bodies) for bodies in handler.bodies()] == [["a", "b", "c"], ["b"]]
    assert handler.batches[1][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert depth(local_sqs, queue_url) == (0, 0)


@pytest.mark.integration
def test_message_always_failing_lands_in_the_dlq_after_five_receives(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given a poison message and no visibility delay, so retries happen at once
    queue_url, dlq_url = make_queues(visibility_timeout=0)
    send(local_sqs, queue_url, "poison")
    handler = RecordingHandler(frozenset({"poison"}))

    # When the poller drains the queue
    SqsPoller(local_sqs.endpoint_url, queue_url, handler).drain(timeout=10)

    # Then the handler saw it exactly five times and it now sits in the DLQ
    receive_counts = [
        batch[0]["attributes"]["ApproximateReceiveCount"] for batch in handler.batches
    ]
    assert receive_counts == ["1", "2", "3", "4", "5"]
    dead = local_sqs.client().receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)
    assert [message["Body"] for message in dead["Messages"]] == ["poison"]
    assert depth(local_sqs, queue_url) == (0, 0)


@pytest.mark.integration
def test_handler_raising_deletes_nothing(local_sqs: LocalSqs, make_queues: QueueFactory) -> None:
    # Given three messages and a handler that crashes
    queue_url, _ = make_queues(visibility_timeout=30)
    send(local_sqs, queue_url, "a", "b", "c")
    handler = RecordingHandler(raises=True)

    # When one batch is handled
    handled = SqsPoller(local_sqs.endpoint_url, queue_url, handler, wait_seconds=0).poll_once()

    # Then all three are still there, in flight until their visibility timeout
    assert handled == 3
    assert depth(local_sqs, queue_url) == (0, 3)


@pytest.mark.integration
def test_unknown_item_identifier_fails_the_whole_batch(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given a handler reporting a message id that is not in the batch
    queue_url, _ = make_queues(visibility_timeout=30)
    send(local_sqs, queue_url, "a", "b")

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-id"}]}

    # When one batch is handled
    SqsPoller(local_sqs.endpoint_url, queue_url, handler, wait_seconds=0).poll_once()

    # Then Lambda's rule applies: nothing is deleted
    assert depth(local_sqs, queue_url) == (0, 2)


@pytest.mark.integration
def test_handler_returning_nothing_deletes_the_whole_batch(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    queue_url, _ = make_queues(visibility_timeout=30)
    send(local_sqs, queue_url, "a", "b")

    def handler(event: dict[str, Any], context: Any) -> None:
        return None

    SqsPoller(local_sqs.endpoint_url, queue_url, handler, wait_seconds=0).poll_once()

    assert depth(local_sqs, queue_url) == (0, 0)


@pytest.mark.integration
def test_batch_log_line_counts_outcomes_without_message_bodies(
    local_sqs: LocalSqs, make_queues: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    queue_url, _ = make_queues(visibility_timeout=30)
    send(local_sqs, queue_url, "card-ending-4242", "fails")
    handler = RecordingHandler(frozenset({"fails"}))

    with caplog.at_level(logging.INFO, logger="tools.local.sqs"):
        SqsPoller(local_sqs.endpoint_url, queue_url, handler, wait_seconds=0).poll_once()

    assert "2 messages, 1 ok, 1 failed" in caplog.text
    assert "card-ending-4242" not in caplog.text


@pytest.mark.integration
def test_run_forever_stops_after_max_batches(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given two messages delivered one per batch
    queue_url, _ = make_queues()
    send(local_sqs, queue_url, "a", "b")
    handler = RecordingHandler()
    poller = SqsPoller(local_sqs.endpoint_url, queue_url, handler, batch_size=1, max_batches=2)

    # When it runs without a stop signal, then it returns after two batches
    poller.run_forever(threading.Event())

    assert sorted(body for batch in handler.bodies() for body in batch) == ["a", "b"]


@pytest.mark.integration
def test_background_poller_delivers_and_stops(
    local_sqs: LocalSqs, make_queues: QueueFactory
) -> None:
    # Given a poller running in its own thread
    queue_url, _ = make_queues()
    delivered = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> None:
        delivered.set()

    poller = SqsPoller(local_sqs.endpoint_url, queue_url, handler)
    thread = poller.start()

    # When a message arrives, then it is delivered; and stop() ends the thread
    send(local_sqs, queue_url, "a")
    try:
        assert delivered.wait(timeout=10)
    finally:
        poller.stop(timeout=10)
    assert not thread.is_alive()


@pytest.mark.integration
def test_start_sqs_on_a_busy_port_raises_instead_of_hanging() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="could not listen"):
            start_sqs(busy.getsockname()[1])


@pytest.mark.integration
def test_clients_use_dummy_credentials_even_when_real_ones_are_in_the_environment(
    local_sqs: LocalSqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEREALKEY00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-session-token")

    client = sqs_client(local_sqs.endpoint_url)
    # botocore keeps the resolved credentials private; this is the only place to see them.
    credentials = client._request_signer._credentials  # type: ignore[attr-defined]
    assert credentials.access_key == "testing"
    assert credentials.secret_key == "testing"
    assert credentials.token is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ("ok", set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"messageId": "m2"}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m9"}]}, {"m1", "m2"}),
        ({"batchItemFailures": "m2"}, {"m1", "m2"}),
    ],
    ids=[
        "none",
        "empty",
        "empty-list",
        "null-list",
        "non-object",
        "one-failure",
        "empty-identifier",
        "null-identifier",
        "wrong-key",
        "unknown-id",
        "not-a-list",
    ],
)
def test_batch_item_failures_follow_lambda_rules(response: Any, expected: set[str]) -> None:
    assert failed_message_ids(response, ["m1", "m2"]) == expected


@pytest.mark.unit
def test_event_builder_base64_encodes_binary_list_values() -> None:
    event = build_sqs_event(
        [
            {
                "MessageId": "m1",
                "ReceiptHandle": "r1",
                "Body": "x",
                "MD5OfBody": "d",
                "MessageAttributes": {
                    "l": {"DataType": "Binary", "BinaryListValues": [b"\xff"]},
                },
            }
        ],
        "arn:aws:sqs:us-east-1:123456789012:q",
    )
    assert event["Records"][0]["messageAttributes"]["l"]["binaryListValues"] == ["/w=="]
    assert event["Records"][0]["attributes"] == {}


@pytest.mark.unit
def test_context_remaining_time_counts_down_from_the_timeout() -> None:
    context = FakeLambdaContext("f", timeout_seconds=0, memory_limit_in_mb=128)
    assert context.get_remaining_time_in_millis() == 0
    assert context.log_group_name == "/aws/lambda/f"
