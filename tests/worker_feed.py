"""Hand the Stripe emulator's events to the webhook worker the way Lambda's SQS trigger does.

The emulator of ``tests.stack`` keeps its events (no webhook endpoint): :class:`WorkerFeed`
lists the ones created since it last looked, wraps each in an SQS record built like the
webhook Lambda's queue message (``tools.local.sqs.build_sqs_event``) and invokes
``functions.webhook_worker.app.lambda_handler``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import httpx

from functions.webhook_worker import app as worker_app
from tests.fakes.lambda_context import FakeLambdaContext
from tools.local.sqs import build_sqs_event

QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:payments-webhook-events-test"
SQS_BATCH_SIZE = 10


def _message(event: dict[str, Any], receive_count: int) -> dict[str, Any]:
    body = json.dumps(event)
    return {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": uuid.uuid4().hex,
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
        "Attributes": {"ApproximateReceiveCount": str(receive_count)},
        "MessageAttributes": {
            "stripe_event_id": {"DataType": "String", "StringValue": event["id"]},
            "stripe_event_type": {"DataType": "String", "StringValue": event["type"]},
        },
    }


class WorkerFeed:
    """The emulator's new events, delivered to the worker handler."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._seen: set[str] = set()
        # Events of earlier tests (the emulator lives for the whole session) are not ours.
        self._seen = {e["id"] for e in self._list_newest_first()}

    def _list_newest_first(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = httpx.get(
                f"{self._base_url}/v1/events", params=params, headers=self._headers, timeout=30
            ).json()
            for event in page["data"]:
                if event["id"] in self._seen:
                    return events
                events.append(event)
            if not page["has_more"]:
                return events
            params["starting_after"] = page["data"][-1]["id"]

    def new_events(self) -> list[dict[str, Any]]:
        """Events created since the last call, oldest first (the order Stripe sends them)."""
        events = list(reversed(self._list_newest_first()))
        self._seen.update(e["id"] for e in events)
        return events

    def deliver(self, events: list[dict[str, Any]], receive_count: int = 1) -> list[str]:
        """Invoke the worker with ``events`` in SQS batches; the ids of failed messages."""
        failed: list[str] = []
        for start in range(0, len(events), SQS_BATCH_SIZE):
            batch = events[start : start + SQS_BATCH_SIZE]
            sqs_event = build_sqs_event(
                [_message(e, receive_count) for e in batch],  # type: ignore[misc]
                QUEUE_ARN,
            )
            response = worker_app.lambda_handler(
                sqs_event, FakeLambdaContext("WebhookWorkerFunction", timeout_seconds=30)
            )
            failed += [item["itemIdentifier"] for item in response.get("batchItemFailures", [])]
        return failed

    def deliver_new(self, *, times: int = 1) -> list[dict[str, Any]]:
        """Deliver every new event ``times`` times (SQS and Stripe both redeliver); returns
        the events. Fails the test if the worker reports a failed message."""
        events = self.new_events()
        for attempt in range(1, times + 1):
            failed = self.deliver(events, receive_count=attempt)
            assert failed == [], f"worker failed {len(failed)} message(s)"
        return events
