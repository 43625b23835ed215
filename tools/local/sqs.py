"""Local SQS (moto in server mode) and a poller that stands in for Lambda's SQS trigger.

* :func:`start_sqs` runs moto's SQS on 127.0.0.1 in a background thread.
* :func:`create_queues` creates the webhook queue and its dead-letter queue, with the redrive
  policy the real stack uses (``maxReceiveCount`` 5) and a short visibility timeout.
* :class:`SqsPoller` does what the event source mapping does: long-polls, hands the handler a
  real SQS event and a Lambda-like context, deletes what succeeded and leaves the rest to come
  back after the visibility timeout (``ReportBatchItemFailures`` semantics). Moving a message
  to the dead-letter queue after ``maxReceiveCount`` receives is done by moto's redrive on
  receive, as SQS does it; the poller does not duplicate it.

moto keeps its state per process: every server started in one process shares the same queues,
so tests use unique queue names. :func:`save_messages` and :func:`restore_messages` carry the
messages of some queues (visible or in flight, with their receive counts) across a restart in a
JSON file, which is how ``make dev`` keeps its pending events and dead letters.

Only dummy credentials are ever used: ``testing``/``testing`` in ``us-east-1``.

``python -m tools.local.sqs [--handler module:function]`` serves on ``LOCAL_SQS_PORT``
(default 12114), creates the queues and, given a handler, polls them until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from moto.server import ThreadedMotoServer

from tools.devserver.lambda_host import FakeLambdaContext
from tools.local._http import (
    LOOPBACK,
    configure_cli_logging,
    port_from_env,
    wait_for_termination,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

logger = logging.getLogger(__name__)

DEFAULT_PORT = 12114
PORT_ENV = "LOCAL_SQS_PORT"
REGION = "us-east-1"
DEFAULT_QUEUE_NAME = "payments-webhook-events"
DEFAULT_VISIBILITY_TIMEOUT = 2
DEFAULT_MAX_RECEIVE_COUNT = 5
# Deliberately fake: these clients must never be able to reach a real AWS account.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"

LambdaHandler = Callable[[dict[str, Any], FakeLambdaContext], Any]


def sqs_client(endpoint_url: str) -> SQSClient:
    """A boto3 SQS client for the local endpoint, with dummy credentials and region."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        # Fail fast locally instead of retrying for a minute against a stopped server.
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2),
    )


class _MotoServer(ThreadedMotoServer):
    """ThreadedMotoServer that reports a failed bind instead of hanging in ``start()``."""

    startup_error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except (OSError, SystemExit) as exc:
            # werkzeug reports "address already in use" by printing and calling sys.exit(1).
            self.startup_error = exc
        finally:
            # start() waits for this event without a timeout; never leave it waiting.
            self._server_ready_event.set()


class LocalSqs:
    """A running local SQS server: ``.endpoint_url``, ``.client()``, ``.stop()``."""

    def __init__(self, server: ThreadedMotoServer, endpoint_url: str) -> None:
        self._server = server
        self.endpoint_url = endpoint_url
        self._stopped = False

    def client(self) -> SQSClient:
        """A boto3 client for this server (dummy credentials)."""
        return sqs_client(self.endpoint_url)

    def stop(self) -> None:
        """Stop the server and release the port. Safe to call twice."""
        if not self._stopped:
            self._stopped = True
            self._server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sqs(port: int = 0) -> LocalSqs:
    """Start moto's SQS on 127.0.0.1:``port`` (0 = any free port) in a background thread."""
    # moto's request handler logs every AWS call at INFO through werkzeug; a poller makes one
    # per second, which would drown the dev server's own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = _MotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    if server.startup_error is not None:
        raise OSError(f"local SQS could not listen on {LOOPBACK}:{port}") from server.startup_error
    host, bound_port = server.get_host_and_port()
    return LocalSqs(server, f"http://{host}:{bound_port}")


def create_queues(
    endpoint_url: str,
    name: str = DEFAULT_QUEUE_NAME,
    *,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
) -> tuple[str, str]:
    """Create ``{name}-dlq`` and ``name`` redriving to it; return ``(queue_url, dlq_url)``.

    The visibility timeout is short locally (2 s) so that failed messages come back quickly;
    tests use 0 to retry at once. Idempotent for identical arguments.
    """
    client = sqs_client(endpoint_url)
    dlq_url = client.create_queue(
        QueueName=f"{name}-dlq",
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_url = client.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


SNAPSHOT_FORMAT = 1


def _moto_queue(queue_url: str) -> Any:
    """moto's in-process model of ``queue_url``, or None (another process's queue)."""
    from moto.sqs.models import sqs_backends

    account, name = queue_url.rstrip("/").split("/")[-2:]
    return sqs_backends[account][REGION].queues.get(name)


def save_messages(path: Path, queue_urls: Sequence[str]) -> int:
    """Write every message of ``queue_urls`` (in flight too) to ``path``; return the count.

    Read from moto's model rather than with ``ReceiveMessage``, which cannot see messages in
    flight and would count as a receive. The file is replaced atomically.
    """
    queues: dict[str, list[dict[str, Any]]] = {}
    for url in queue_urls:
        queue = _moto_queue(url)
        if queue is None:
            continue
        with queue._messages_lock:
            messages = list(queue._messages)
        queues[url.rstrip("/").rsplit("/", 1)[-1]] = [
            {
                "body": message.body,
                "attributes": {
                    name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
                    for name, value in message.message_attributes.items()
                    if "StringValue" in value
                },
                "receive_count": message.approximate_receive_count,
            }
            for message in messages
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"format": SNAPSHOT_FORMAT, "queues": queues}))
    os.replace(temporary, path)
    return sum(len(messages) for messages in queues.values())


def restore_messages(path: Path, endpoint_url: str, queue_urls: Sequence[str]) -> int:
    """Send the messages :func:`save_messages` wrote back to the queues of the same names.

    Receive counts are kept, so a message that had failed four times still goes to the
    dead-letter queue at its fifth. Returns how many messages were restored.
    """
    if not path.exists():
        return 0
    saved = json.loads(path.read_text())
    if saved.get("format") != SNAPSHOT_FORMAT:
        return 0
    client = sqs_client(endpoint_url)
    restored = 0
    for url in queue_urls:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        queue = _moto_queue(url)
        for message in saved["queues"].get(name, []):
            kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": message["body"]}
            if message["attributes"]:
                kwargs["MessageAttributes"] = message["attributes"]
            message_id = client.send_message(**kwargs)["MessageId"]
            if queue is not None and message.get("receive_count"):
                for stored in queue._messages:
                    if stored.id == message_id:
                        stored.approximate_receive_count = int(message["receive_count"])
            restored += 1
    return restored


def _lambda_message_attributes(
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef],
) -> dict[str, dict[str, Any]]:
    # Lambda renames SQS's PascalCase fields and base64-encodes binary values.
    converted: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {}
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        entry["stringListValues"] = list(value.get("StringListValues", []))
        entry["binaryListValues"] = [
            base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])
        ]
        entry["dataType"] = value["DataType"]
        converted[name] = entry
    return converted


def build_sqs_event(messages: Sequence[MessageTypeDef], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS trigger passes for ``messages`` received from ``queue_arn``."""
    records = []
    for message in messages:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes", {})),
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def failed_message_ids(response: Any, message_ids: Sequence[str]) -> set[str]:
    """Which messages a handler response reports as failed, per Lambda's documented rules.

    No response, no ``batchItemFailures`` or an empty list means every message succeeded. An
    entry without a usable ``itemIdentifier``, or naming a message not in the batch, makes
    Lambda treat the whole batch as failed.
    """
    if not isinstance(response, Mapping):
        return set()
    failures = response.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    in_batch = set(message_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, str) or identifier not in in_batch:
            logger.warning("invalid batchItemFailures entry %r: whole batch failed", item)
            return set(message_ids)
        failed.add(identifier)
    return failed


class SqsPoller:
    """Lambda's SQS event source mapping, locally: poll, invoke, delete successes.

    ``handler(event, context)`` is the Lambda handler. With ``report_batch_item_failures``
    (the default, as in the template) its ``{"batchItemFailures": [...]}`` response is
    honoured; if it raises, no message is deleted and the whole batch comes back after the
    visibility timeout. ``max_batches`` bounds :meth:`run_forever` (counting non-empty batches).
    """

    def __init__(
        self,
        endpoint_url: str,
        queue_url: str,
        handler: LambdaHandler,
        batch_size: int = 10,
        wait_seconds: int = 1,
        max_batches: int | None = None,
        *,
        function_name: str = "local-sqs-consumer",
        timeout_seconds: float = 30.0,
        memory_limit_in_mb: int = 512,
        report_batch_item_failures: bool = True,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError("batch_size must be between 1 and 10 (one ReceiveMessage call)")
        if not 0 <= wait_seconds <= 20:
            raise ValueError("wait_seconds must be between 0 and 20")
        self.endpoint_url = endpoint_url
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.max_batches = max_batches
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.memory_limit_in_mb = memory_limit_in_mb
        self.report_batch_item_failures = report_batch_item_failures
        self.batches_handled = 0
        self._client = sqs_client(endpoint_url)
        self._queue_arn: str | None = None
        self._stop_event: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def queue_arn(self) -> str:
        """The queue's ARN, used as ``eventSourceARN``."""
        if self._queue_arn is None:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]
            self._queue_arn = attributes["QueueArn"]
        return self._queue_arn

    def poll_once(self) -> int:
        """Receive one batch (long-polling up to ``wait_seconds``), handle it, return its size."""
        return self._poll(self.wait_seconds)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Poll until ``stop_event`` is set (or ``max_batches`` batches were handled)."""
        while not stop_event.is_set():
            if self.max_batches is not None and self.batches_handled >= self.max_batches:
                return
            try:
                self.poll_once()
            except (BotoCoreError, ClientError) as exc:
                # The queue may be restarting; Lambda's poller also just retries.
                logger.warning("sqs poll failed (%s); retrying", exc)
                stop_event.wait(1.0)

    def start(self) -> threading.Thread:
        """Run :meth:`run_forever` in a daemon thread; stop it with :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("poller already running")
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=self.run_forever,
            args=(self._stop_event,),
            name=f"sqs-poller-{self.function_name}",
            daemon=True,
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread started by :meth:`start`; waits for the current batch to finish."""
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, timeout: float = 10.0) -> int:
        """Poll until the queue holds no message, visible or in flight; return messages handled.

        Meant for tests. Raises :class:`TimeoutError` if the queue is not empty in time, e.g.
        because a message keeps failing and no dead-letter queue is configured.
        """
        deadline = time.monotonic() + timeout
        handled = 0
        while True:
            visible, in_flight = self.queue_depth()
            if visible + in_flight == 0:
                return handled
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"queue not drained after {timeout}s: {visible} visible, {in_flight} in flight"
                )
            # Only long-poll when everything left is in flight, i.e. waiting for its
            # visibility timeout; otherwise receive at once.
            handled += self._poll(0 if visible else 1)

    def queue_depth(self) -> tuple[int, int]:
        """``(visible, in_flight)`` message counts; delayed messages count as in flight."""
        attributes = self._client.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesDelayed", 0)
        )
        return visible, in_flight

    def _poll(self, wait_seconds: int) -> int:
        messages = self._client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        self.batches_handled += 1
        message_ids = [message["MessageId"] for message in messages]
        started = time.monotonic()
        failed = self._invoke(build_sqs_event(messages, self.queue_arn), message_ids)
        elapsed_ms = (time.monotonic() - started) * 1000
        succeeded = [message for message in messages if message["MessageId"] not in failed]
        self._delete(succeeded)
        logger.info(
            "sqs batch for %s: %d messages, %d ok, %d failed, %.0f ms",
            self.function_name,
            len(messages),
            len(succeeded),
            len(failed),
            elapsed_ms,
        )
        return len(messages)

    def _invoke(self, event: dict[str, Any], message_ids: Sequence[str]) -> set[str]:
        """Call the handler; return the ids of the messages that must not be deleted."""
        context = FakeLambdaContext(
            self.function_name,
            timeout_seconds=self.timeout_seconds,
            memory_limit_in_mb=self.memory_limit_in_mb,
        )
        started = time.monotonic()
        try:
            response = self.handler(event, context)
        except Exception:
            # As in Lambda: an invocation error fails the whole batch; log it and move on.
            logger.exception("%s raised; no message of the batch is deleted", self.function_name)
            return set(message_ids)
        elapsed = time.monotonic() - started
        if elapsed > self.timeout_seconds:
            # Not enforced, so that a debugger pause does not fail the batch, but worth knowing.
            logger.warning(
                "%s took %.1fs, over its %.0fs timeout: Lambda would have failed the batch",
                self.function_name,
                elapsed,
                self.timeout_seconds,
            )
        if not self.report_batch_item_failures:
            return set()
        return failed_message_ids(response, message_ids)

    def _delete(self, messages: Sequence[MessageTypeDef]) -> None:
        if not messages:
            return
        result = self._client.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages)
            ],
        )
        for failure in result.get("Failed", []):
            logger.warning("could not delete message %s: %s", failure["Id"], failure["Code"])


def _load_handler(spec: str) -> LambdaHandler:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"--handler must look like package.module:function, not {spec!r}")
    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise SystemExit(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tools.local.sqs``: serve SQS, create the queues, optionally poll them."""
    parser = argparse.ArgumentParser(prog="python -m tools.local.sqs", description=__doc__)
    parser.add_argument("--queue-name", default=DEFAULT_QUEUE_NAME)
    parser.add_argument("--visibility-timeout", type=int, default=DEFAULT_VISIBILITY_TIMEOUT)
    parser.add_argument("--handler", help="Lambda handler to feed, e.g. package.module:handler")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--function-name", default="local-sqs-consumer")
    args = parser.parse_args(argv)

    configure_cli_logging()
    local = start_sqs(port_from_env(PORT_ENV, DEFAULT_PORT))
    queue_url, dlq_url = create_queues(
        local.endpoint_url, args.queue_name, visibility_timeout=args.visibility_timeout
    )
    print(f"Local SQS on {local.endpoint_url}\n  queue {queue_url}\n  dlq   {dlq_url}", flush=True)
    poller = None
    if args.handler:
        poller = SqsPoller(
            local.endpoint_url,
            queue_url,
            _load_handler(args.handler),
            batch_size=args.batch_size,
            function_name=args.function_name,
        )
        poller.start()
        print(f"  polling into {args.handler}", flush=True)
    try:
        wait_for_termination()
    finally:
        if poller is not None:
            poller.stop()
        local.stop()


if __name__ == "__main__":
    main()
