"""SQS adapter: the queue between the webhook Lambda and its worker.

One SQS client per container (``get_event_queue``), with short explicit timeouts and
botocore's standard retry mode, so a slow SQS answer turns into a 500 (and a Stripe retry)
well inside the webhook's time budget instead of a hung request. ``AWS_ENDPOINT_URL`` points it
at a local SQS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from payments import errors
from payments.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"max_attempts": 3, "mode": "standard"},
)


class QueueUnavailable(errors.PaymentsError):
    """The event could not be queued; the caller must answer 5xx so that Stripe retries."""

    code = "queue_unavailable"
    default_message = "The event could not be accepted. Please retry."


class EventQueue:
    """Sends verified Stripe events to the worker's queue."""

    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self._queue_url = queue_url
        self._client = client

    def send_event(self, body: str, *, event_id: str, event_type: str) -> str:
        """Queue ``body`` (the event JSON as Stripe sent it); return the SQS message id."""
        try:
            response = self._client.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageAttributes={
                    "stripe_event_id": {"DataType": "String", "StringValue": event_id},
                    "stripe_event_type": {"DataType": "String", "StringValue": event_type},
                },
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning(
                "queue write failed",
                extra={"stripe_event_id": event_id, "error_type": type(exc).__name__},
            )
            raise QueueUnavailable() from exc
        return response["MessageId"]


def sqs_client(endpoint_url: str | None = None) -> Any:
    """An SQS client with this service's timeouts and retry policy.

    botocore directly rather than boto3: boto3's import pulls in s3transfer, which the
    webhook path never uses and which costs a large share of its cold start.
    """
    session = botocore.session.get_session()
    return session.create_client("sqs", endpoint_url=endpoint_url or None, config=CLIENT_CONFIG)


@lru_cache(maxsize=4)
def get_event_queue(queue_url: str, endpoint_url: str | None = None) -> EventQueue:
    """The queue of this container, built on first use and kept for warm invocations."""
    return EventQueue(queue_url, sqs_client(endpoint_url))
