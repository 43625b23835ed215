"""Stripe event worker: the SQS trigger of the webhook queue.

Each message is one verified Stripe event. A batch is applied in one database transaction,
each event in a savepoint of its own, and its dispatches performed together
(``process_event_batch``); each message keeps its own result. A message that fails (database
down, Make.com down, malformed) is reported in ``batchItemFailures`` and comes back after the
visibility timeout; the rest of the batch is deleted. After ``maxReceiveCount`` receives SQS
moves it to the dead-letter queue, which alarms.

One failure is not the queue's to keep: an event applied whose dispatch failed (Make.com or
Stripe down) is already safe, its dispatch pending in the outbox. Its message comes back on its
first receives, which heals a short outage within minutes; from ``DISPATCH_RECEIVES`` on it is
acknowledged and the dispatch left to the reconciler, which performs it once Make.com answers
and alarms (``OldestPendingDispatchAlarm``) while it cannot. So the dead-letter queue, and its
alarm, hold only events that could not be applied.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from payments.adapters.make import get_make_webhook
from payments.adapters.store import get_store
from payments.deadline import start_invocation
from payments.errors import PaymentsError
from payments.observability import logger
from payments.runtime import bootstrap
from payments.settings import Settings
from payments.webhook_processing import (
    DispatchFailed,
    MessageResult,
    WorkerPorts,
    key_livemode,
    process_event_batch,
)

if TYPE_CHECKING:
    from payments.adapters.stripe_service import StripeService

REQUIRED = ("stripe_secret_key", "make_webhook_url", "make_api_key")
# The receive from which a message whose only failure is a dispatch is acknowledged (the
# queue's maxReceiveCount is 5): its dispatch stays pending in the outbox for the reconciler.
DISPATCH_RECEIVES = 3


@lru_cache(maxsize=1)
def _ports(settings: Settings) -> WorkerPorts:
    def stripe() -> StripeService:
        # Imported on first use: only product switches and subscription events need Stripe.
        from payments.adapters.stripe_service import get_stripe

        return get_stripe(settings)

    return WorkerPorts(
        store=get_store(settings),
        make=get_make_webhook(settings),
        refunds=stripe,
        subscriptions=stripe,
        livemode=key_livemode(settings.value("stripe_secret_key")),
        allow_repeat_purchases=settings.allow_repeat_purchases,
    )


def _report(record: dict[str, Any], result: MessageResult) -> bool:
    """Log a message's failure (the reason, never the body: the payload may carry customer
    details); True when the message must come back."""
    if not isinstance(result, Exception):
        return False
    attribute = (record.get("messageAttributes") or {}).get("stripe_event_id") or {}
    context = {"message_id": record["messageId"], "stripe_event_id": attribute.get("stringValue")}
    receives = _receive_count(record)
    if isinstance(result, DispatchFailed) and receives >= DISPATCH_RECEIVES:
        logger.warning(
            "stripe event applied, dispatch left to the reconciler",
            extra={**context, "reason": result.message, "receive_count": receives},
        )
        return False
    if isinstance(result, PaymentsError):
        logger.warning(
            "stripe event message failed",
            extra={
                **context,
                "code": result.code,
                "reason": result.message,
                "receive_count": receives,
            },
        )
    else:
        logger.error("stripe event message failed unexpectedly", extra=context, exc_info=result)
    return True


def _receive_count(record: dict[str, Any]) -> int:
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    except ValueError:
        return 1


def handle_batch(event: dict[str, Any], context: LambdaContext, ports: WorkerPorts) -> Any:
    """Process one SQS batch with these ports; the partial batch response for Lambda.

    The database work of the whole batch happens in one transaction; each message then gets
    its own result, so failures stay per message: the failed ones are named in
    ``batchItemFailures`` (the event source mapping reports them, ``ReportBatchItemFailures``)
    and come back, the rest are deleted.
    """
    records = event.get("Records") or []
    results = process_event_batch(
        {record["messageId"]: record.get("body") or "" for record in records}, ports
    )
    failed = [record for record in records if _report(record, results[record["messageId"]])]
    return {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in failed]}


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    settings = bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    return handle_batch(event, context, _ports(settings))
