"""Move the Stripe events parked in the webhook dead-letter queue back to the webhook queue.

    python -m tools.redrive_dlq             # move every message back (WEBHOOK_QUEUE_URL)
    python -m tools.redrive_dlq --dry-run   # list what would move

Run it once the cause of the failures is fixed. Each message is sent to the queue with its body
and attributes, then deleted from the dead-letter queue; a message interrupted between the two
steps is sent twice, which the worker absorbs (it dedupes on the Stripe event id). Re-running is
safe and moves only what is still parked. The dead-letter queue is read from the queue's
redrive policy unless ``--dlq-url`` is given; ``AWS_ENDPOINT_URL`` points it at a local SQS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import botocore.session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from payments.adapters.queue import sqs_client

BATCH = 10
_MISSING_QUEUE_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def missing_region() -> str | None:
    """The one-line problem when no AWS region is configured (botocore would raise later)."""
    if botocore.session.get_session().get_config_variable("region"):
        return None
    return "no AWS region: set AWS_DEFAULT_REGION (against make dev, use its make target)"


def sqs_problem(exc: BotoCoreError | ClientError, queue_url: str, endpoint: str | None) -> str:
    """What a failed SQS call means for the person running the tool, in one line."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_QUEUE_CODES:
            return f"no queue at {queue_url} (check WEBHOOK_QUEUE_URL)"
        message = exc.response.get("Error", {}).get("Message", "")
        return f"SQS refused the call ({code or 'error'}): {message}"
    if isinstance(exc, EndpointConnectionError):
        where = endpoint or "AWS"
        hint = ": is make dev running?" if endpoint else ""
        return f"cannot reach SQS at {where}{hint}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE)"
    return f"SQS call failed: {exc}"


def dead_letter_queue_url(client: Any, queue_url: str) -> str:
    """The dead-letter queue named in ``queue_url``'s redrive policy."""
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise SystemExit(f"{queue_url} has no redrive policy; pass --dlq-url")
    arn = json.loads(policy)["deadLetterTargetArn"]
    account, name = arn.split(":")[4], arn.split(":")[5]
    url: str = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return url


def _describe(message: dict[str, Any]) -> str:
    attributes = message.get("MessageAttributes", {})
    event_id = attributes.get("stripe_event_id", {}).get("StringValue", "?")
    event_type = attributes.get("stripe_event_type", {}).get("StringValue", "?")
    return f"{event_id} ({event_type})"


def redrive(client: Any, queue_url: str, dlq_url: str, *, dry_run: bool = False) -> int:
    """Move (or, dry, list) every message of ``dlq_url`` to ``queue_url``; return the count."""
    seen: set[str] = set()
    moved = 0
    while True:
        messages = client.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=BATCH,
            MessageAttributeNames=["All"],
            # A dry run only peeks: the messages become visible again at once.
            VisibilityTimeout=0 if dry_run else 60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            if dry_run:
                print(f"would move {_describe(message)}")
                moved += 1
                continue
            client.send_message(
                QueueUrl=queue_url,
                MessageBody=message["Body"],
                MessageAttributes={
                    name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
                    for name, value in message.get("MessageAttributes", {}).items()
                    if "StringValue" in value
                },
            )
            client.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
            print(f"moved {_describe(message)}")
    verb = "would move" if dry_run else "moved"
    print(f"{verb} {moved} message(s) from the dead-letter queue", flush=True)
    return moved


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.redrive_dlq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="list, move nothing")
    parser.add_argument("--queue-url", default=os.environ.get("WEBHOOK_QUEUE_URL"))
    parser.add_argument("--dlq-url", help="default: the queue's redrive policy target")
    args = parser.parse_args(argv)
    if not args.queue_url:
        parser.error("set WEBHOOK_QUEUE_URL or pass --queue-url")
    problem = missing_region()
    if problem:
        print(f"redrive_dlq: {problem}", file=sys.stderr)
        return 2
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    try:
        client = sqs_client(endpoint)
        dlq_url = args.dlq_url or dead_letter_queue_url(client, args.queue_url)
        redrive(client, args.queue_url, dlq_url, dry_run=args.dry_run)
    except (BotoCoreError, ClientError) as exc:
        print(f"redrive_dlq: {sqs_problem(exc, args.queue_url, endpoint)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
