"""The local queue's messages, in flight and dead-lettered ones too, survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.conftest import QueueFactory
from tools.local.sqs import LocalSqs, restore_messages, save_messages

pytestmark = pytest.mark.integration


def test_saved_messages_come_back_with_their_attributes_and_receive_counts(
    local_sqs: LocalSqs, make_queues: QueueFactory, tmp_path: Path
) -> None:
    # Given a message received twice and still in flight, and one visible
    queue_url, dlq_url = make_queues(visibility_timeout=30)
    client = local_sqs.client()
    attributes = {"stripe_event_id": {"DataType": "String", "StringValue": "evt_1"}}
    client.send_message(QueueUrl=queue_url, MessageBody="in flight", MessageAttributes=attributes)
    client.receive_message(QueueUrl=queue_url, VisibilityTimeout=0)
    client.receive_message(QueueUrl=queue_url, VisibilityTimeout=30)
    client.send_message(QueueUrl=dlq_url, MessageBody="dead letter")
    path = tmp_path / "messages.json"

    # When they are saved, the queues emptied (a new process) and the save restored
    assert save_messages(path, [queue_url, dlq_url]) == 2
    client.purge_queue(QueueUrl=queue_url)
    client.purge_queue(QueueUrl=dlq_url)
    assert restore_messages(path, local_sqs.endpoint_url, [queue_url, dlq_url]) == 2

    # Then each is back in its queue, visible, with its attributes and its receive count
    got = client.receive_message(
        QueueUrl=queue_url,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    assert [m["Body"] for m in got] == ["in flight"]
    assert got[0]["MessageAttributes"]["stripe_event_id"]["StringValue"] == "evt_1"
    # Two receives before the save, this one makes three.
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "3"
    dead = client.receive_message(QueueUrl=dlq_url)["Messages"]
    assert [m["Body"] for m in dead] == ["dead letter"]


def test_no_save_restores_nothing(
    local_sqs: LocalSqs, make_queues: QueueFactory, tmp_path: Path
) -> None:
    queue_url, _ = make_queues()

    assert restore_messages(tmp_path / "none.json", local_sqs.endpoint_url, [queue_url]) == 0
