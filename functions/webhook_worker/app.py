"""Stripe event worker: the SQS trigger of the webhook queue.

Each message is one verified Stripe event, processed on its own (``process_event_message``).
A message that fails (database down, Make.com down, malformed) is reported in
``batchItemFailures`` and comes back after the visibility timeout; the rest of the batch is
deleted. After ``maxReceiveCount`` receives SQS moves it to the dead-letter queue, which alarms.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments.adapters.make import get_make_webhook
from payments.adapters.store import get_store
from payments.deadline import start_invocation
from payments.errors import PaymentsError
from payments.observability import logger
from payments.runtime import bootstrap
from payments.settings import Settings
from payments.webhook_processing import (
    MessageResult,
    WorkerPorts,
    key_livemode,
    process_event_batch,
)

if TYPE_CHECKING:
    from payments.adapters.stripe_service import StripeService

REQUIRED = ("stripe_secret_key", "make_webhook_url", "make_api_key")


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


def _record_handler(results: dict[str, MessageResult]) -> Any:
    def handle(record: SQSRecord) -> str:
        id_attribute = record.message_attributes["stripe_event_id"]
        event_id = id_attribute.string_value if id_attribute is not None else None
        result = results[record.message_id]
        if isinstance(result, PaymentsError):
            # The reason, never the body: the payload may carry customer details.
            logger.warning(
                "stripe event message failed",
                extra={
                    "message_id": record.message_id,
                    "stripe_event_id": event_id,
                    "code": result.code,
                    "reason": result.message,
                    "receive_count": record.attributes.approximate_receive_count,
                },
            )
            raise result
        if isinstance(result, Exception):
            logger.error(
                "stripe event message failed unexpectedly",
                extra={"message_id": record.message_id, "stripe_event_id": event_id},
                exc_info=result,
            )
            raise result
        return result.outcome

    return handle


def handle_batch(event: dict[str, Any], context: LambdaContext, ports: WorkerPorts) -> Any:
    """Process one SQS batch with these ports; the partial batch response for Lambda."""
    records = event.get("Records") or []
    # The database work of the whole batch happens here, in one transaction; the processor
    # then reports each message's own result, so failures stay per message.
    results = process_event_batch(
        {record["messageId"]: record.get("body") or "" for record in records}, ports
    )
    # One processor per invocation: it holds the batch's results.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=_record_handler(results), processor=processor, context=context
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    settings = bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    return handle_batch(event, context, _ports(settings))
