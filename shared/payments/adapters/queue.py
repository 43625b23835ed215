"""SQS adapter: the queue between the webhook Lambda and its worker.

The webhook sends with :class:`SqsJsonClient`, one SigV4-signed ``SendMessage`` over SQS's
JSON protocol with the standard library (``payments.adapters.aws_sigv4``): botocore's session
and service-model machinery were most of the webhook's cold start for this one call. One
client per container (``get_event_queue``), short explicit timeouts and a bounded retry, so a
slow SQS answer turns into a 500 (and a Stripe retry) well inside the webhook's time budget.
``AWS_ENDPOINT_URL`` points it at a local SQS.

``sqs_client`` (botocore, imported on call) remains for the operator tools and tests that need
the rest of the SQS API (create, receive, redrive).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol

from payments import errors
from payments.adapters.aws_sigv4 import AwsError, AwsJsonClient
from payments.observability import logger


class QueueUnavailable(errors.PaymentsError):
    """The event could not be queued; the caller must answer 5xx so that Stripe retries."""

    code = "queue_unavailable"
    default_message = "The event could not be accepted. Please retry."


class SqsSender(Protocol):
    """What the queue needs of a client: botocore's ``send_message`` signature."""

    # botocore's parameter names, so that its client satisfies this protocol too.
    def send_message(
        self,
        *,
        QueueUrl: str,  # noqa: N803
        MessageBody: str,  # noqa: N803
        MessageAttributes: Mapping[str, Any],  # noqa: N803
    ) -> Mapping[str, Any]: ...


class SqsJsonClient:
    """``SendMessage`` over SQS's JSON protocol, shaped like botocore's client method."""

    def __init__(self, aws: AwsJsonClient) -> None:
        self._aws = aws

    def send_message(
        self,
        *,
        QueueUrl: str,  # noqa: N803
        MessageBody: str,  # noqa: N803
        MessageAttributes: Mapping[str, Any],  # noqa: N803
    ) -> Mapping[str, Any]:
        answer = self._aws.call(
            "SendMessage",
            {
                "QueueUrl": QueueUrl,
                "MessageBody": MessageBody,
                "MessageAttributes": dict(MessageAttributes),
            },
        )
        # What botocore checks too: SQS's digest of the body it stored is the body we sent.
        expected = hashlib.md5(MessageBody.encode(), usedforsecurity=False).hexdigest()
        if answer.get("MD5OfMessageBody") != expected or not answer.get("MessageId"):
            raise AwsError("sqs SendMessage answered without a matching MD5OfMessageBody")
        return answer


class EventQueue:
    """Sends verified Stripe events to the worker's queue."""

    def __init__(self, queue_url: str, client: SqsSender) -> None:
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
        except AwsError as exc:
            logger.warning(
                "queue write failed",
                extra={
                    "stripe_event_id": event_id,
                    "error_type": exc.aws_code or type(exc.__cause__ or exc).__name__,
                    "status": exc.status,
                },
            )
            raise QueueUnavailable() from exc
        return str(response["MessageId"])


def _region_of(queue_url: str) -> str | None:
    # https://sqs.<region>.amazonaws.com/<account>/<name>: the region, when AWS_REGION is unset.
    host = queue_url.split("://", 1)[-1].split("/", 1)[0]
    labels = host.split(".")
    if len(labels) >= 4 and labels[0] == "sqs" and labels[-2:] == ["amazonaws", "com"]:
        return labels[1]
    return None


def json_sqs_client(queue_url: str, endpoint_url: str | None = None) -> SqsJsonClient:
    """The webhook's SQS client: stdlib SigV4 over the JSON protocol."""
    configured = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    region = None if configured else _region_of(queue_url)
    aws = AwsJsonClient("sqs", "AmazonSQS", region=region, endpoint_url=endpoint_url)
    return SqsJsonClient(aws)


@lru_cache(maxsize=4)
def get_event_queue(queue_url: str, endpoint_url: str | None = None) -> EventQueue:
    """The queue of this container, built on first use and kept for warm invocations."""
    return EventQueue(queue_url, json_sqs_client(queue_url, endpoint_url))


def sqs_client(endpoint_url: str | None = None) -> Any:
    """A full botocore SQS client, for operator tools and tests (never the webhook's path).

    botocore directly rather than boto3: boto3's import pulls in s3transfer.
    """
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    config = Config(
        connect_timeout=2, read_timeout=3, retries={"max_attempts": 3, "mode": "standard"}
    )
    return session.create_client("sqs", endpoint_url=endpoint_url or None, config=config)


def queue_depth(queue_url: str, endpoint_url: str | None = None) -> int | None:
    """Messages waiting in ``queue_url`` (the dead-letter queue's depth for operators), or None
    when SQS cannot say: the caller shows "unknown", it does not fail."""
    try:
        client = AwsJsonClient("sqs", "AmazonSQS", endpoint_url=endpoint_url)
        answer = client.call(
            "GetQueueAttributes",
            {"QueueUrl": queue_url, "AttributeNames": ["ApproximateNumberOfMessages"]},
        )
        client.close()
        return int(answer["Attributes"]["ApproximateNumberOfMessages"])
    except (errors.PaymentsError, KeyError, ValueError, OSError) as exc:
        logger.warning("dead-letter depth unavailable", extra={"reason": type(exc).__name__})
        return None
