"""The worker's job for one queued Stripe event: apply it once, then perform what it queued.

1. ``parse_event`` + ``interpret_event`` (``payments.webhooks``): the SQL call's parameters.
2. ``process_stripe_event``: claims the event id and applies the effect in one transaction; a
   duplicate changes nothing.
3. A dispute opened by this event (not by a duplicate) alerts a person.
4. Every pending outbox row of the event is leased, performed (Make.com ``add_project``, a
   product-switch refund in Stripe) and marked sent. This runs for duplicates too: a message
   redelivered after a Make.com outage finds the event applied but its dispatch still pending.
   A failed dispatch is released and re-raised, so only this SQS message is retried.

Ports are parameters (``WorkerPorts``), so tests pass real stores and local stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from payments.adapters.store import Store
from payments.errors import PaymentsError
from payments.models import IssuedRefund
from payments.observability import alert, logger
from payments.webhooks import EventEffect, interpret_event, parse_event

# Longer than the worker's timeout: a lease never expires while its holder may still send.
OUTBOX_LEASE_SECONDS = 120

Outcome = Literal["applied", "stale", "ignored", "duplicate"]


class MakeDispatcher(Protocol):
    def send(self, payload: Mapping[str, Any]) -> None: ...


class SubscriptionSource(Protocol):
    def retrieve_subscription(self, subscription_id: str) -> Mapping[str, Any]: ...


class RefundIssuer(Protocol):
    def create_refund(
        self,
        payment_intent: str,
        *,
        idempotency_key: str,
        amount: int | None = None,
        reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> IssuedRefund: ...


@dataclass(frozen=True)
class WorkerPorts:
    store: Store
    make: MakeDispatcher
    # Built on first use: most events never need Stripe, and the worker's cold start should
    # not pay for a client it does not use.
    refunds: Callable[[], RefundIssuer]
    # Where a subscription event's object is re-read from Stripe (None: trust the payload).
    # Stripe stamps events in whole seconds: two changes of one second cannot be ordered by
    # ``created``, so the state applied must be Stripe's current one, not the event's snapshot.
    subscriptions: Callable[[], SubscriptionSource] | None = None


@dataclass(frozen=True)
class ProcessedEvent:
    event_id: str
    event_type: str
    outcome: Outcome
    dispatched: int


class DispatchFailed(PaymentsError):
    """At least one side effect of the event failed; the message must be retried."""

    code = "dispatch_failed"


def switch_refund_idempotency_key(payment_intent: str) -> str:
    return f"switch-refund:{payment_intent}"


class EventRefused(PaymentsError):
    """The database rolled this one event back; the message is retried on its own."""

    code = "event_refused"


MessageResult = ProcessedEvent | Exception


def process_event_batch(bodies: Mapping[str, str], ports: WorkerPorts) -> dict[str, MessageResult]:
    """Apply a batch of queued events, keyed by message id; each gets its own result.

    All events go to the database in one call and one transaction, each in its own savepoint
    (``process_stripe_events``): the batch pays for one commit instead of one per event, and a
    refused event is rolled back and reported alone. Side effects follow per event.
    """
    results: dict[str, MessageResult] = {}
    effects: dict[str, EventEffect] = {}
    for message_id, body in bodies.items():
        try:
            effects[message_id] = _current(interpret_event(parse_event(body)), ports)
        except PaymentsError as exc:
            results[message_id] = exc
    # Same order in every worker: racing workers take the ledger's locks in the same order.
    ordered = sorted(effects.items(), key=lambda item: item[1].event.id)
    if not ordered:
        return results
    try:
        outcomes = ports.store.call(
            "process_stripe_events", p_events=[effect.batch_item() for _, effect in ordered]
        )
    except Exception as exc:  # noqa: BLE001 - every message of the batch fails with it
        return {**results, **{message_id: exc for message_id, _ in ordered}}
    for (message_id, effect), result in zip(ordered, outcomes, strict=True):
        if result.get("outcome") == "error":
            results[message_id] = EventRefused(
                f"the database refused the event (SQLSTATE {result.get('sqlstate')})"
            )
            continue
        try:
            results[message_id] = _after_commit(effect, result, ports)
        except Exception as exc:  # noqa: BLE001 - reported for this message only
            results[message_id] = exc
    return results


def _current(effect: EventEffect, ports: WorkerPorts) -> EventEffect:
    """A subscription event's effect with the subscription as Stripe holds it now.

    Whichever of two same-second events is applied last then writes the newest state, and an
    older event (earlier ``created``) is still refused by the SQL guard.
    """
    if effect.action != "subscription" or ports.subscriptions is None or not effect.object_id:
        return effect
    current = ports.subscriptions().retrieve_subscription(effect.object_id)
    return interpret_event(replace(effect.event, object=current))


def process_event_message(body: str, ports: WorkerPorts) -> ProcessedEvent:
    """Apply one queued Stripe event exactly once in effect and perform its side effects."""
    result = process_event_batch({"message": body}, ports)["message"]
    if isinstance(result, Exception):
        raise result
    return result


def _after_commit(
    effect: EventEffect, result: Mapping[str, Any], ports: WorkerPorts
) -> ProcessedEvent:
    event = effect.event
    outcome: Outcome = result["outcome"]
    log_context = {"stripe_event_id": event.id, "stripe_event_type": event.type}
    if outcome == "ignored":
        logger.info("stripe event ignored", extra=log_context)
    else:
        logger.info("stripe event processed", extra={**log_context, "outcome": outcome})
    if outcome == "applied":
        _alert_if_needed(effect, result)
    # Only events that queued a side effect (or a duplicate whose dispatch is still owed)
    # need the outbox; absent the flag, look anyway.
    dispatched = dispatch_pending(event.id, ports) if result.get("pending_outbox", True) else 0
    return ProcessedEvent(event.id, event.type, outcome, dispatched)


def _alert_if_needed(effect: EventEffect, result: Mapping[str, Any]) -> None:
    if effect.action != "dispute":
        return
    data = effect.data
    context = {
        "stripe_event_id": effect.event.id,
        "dispute_id": data.get("dispute_id"),
        "payment_intent": data.get("payment_intent"),
        "amount": data.get("amount"),
        "currency": data.get("currency"),
        "reason": data.get("reason"),
        "dispute_status": data.get("status"),
        "evidence_due_by": data.get("evidence_due_by"),
        "member_id": result.get("member_id"),
    }
    if effect.event.type == "charge.dispute.created":
        alert("payment disputed: submit evidence before the deadline", **context)
    else:
        logger.warning("dispute closed", extra=context)


def dispatch_pending(event_id: str, ports: WorkerPorts) -> int:
    """Perform the pending outbox rows of ``event_id`` this worker can lease; return how many
    were sent. Raises ``DispatchFailed`` after trying every row if any of them failed."""
    rows = ports.store.call(
        "claim_outbox_dispatches", p_event_id=event_id, p_lease_seconds=OUTBOX_LEASE_SECONDS
    )
    sent, failures = 0, []
    for row in rows or []:
        try:
            result = _perform(row, ports)
        except PaymentsError as exc:
            ports.store.call("release_outbox_dispatch", p_id=row["id"], p_error=exc.code)
            logger.warning(
                "outbox dispatch failed",
                extra={
                    "stripe_event_id": event_id,
                    "kind": row["kind"],
                    "outbox_id": row["id"],
                    "attempts": row["attempts"],
                    "code": exc.code,
                },
            )
            failures.append(exc.code)
            continue
        except Exception:
            # Not ours to judge: free the row for the retry and let the batch report it.
            ports.store.call("release_outbox_dispatch", p_id=row["id"], p_error="unexpected")
            raise
        ports.store.call("complete_outbox_dispatch", p_id=row["id"], p_result=result)
        logger.info(
            "outbox dispatch sent",
            extra={"stripe_event_id": event_id, "kind": row["kind"], "outbox_id": row["id"]},
        )
        sent += 1
    if failures:
        raise DispatchFailed(f"{len(failures)} dispatch(es) failed: {', '.join(failures)}")
    return sent


def _perform(row: Mapping[str, Any], ports: WorkerPorts) -> dict[str, Any]:
    kind, payload = row["kind"], row["payload"]
    if kind == "add_project":
        ports.make.send({"idempotency_key": row["event_id"], **payload})
        return {}
    if kind == "switch_refund":
        original = str(payload["payment_intent"])
        try:
            refund = ports.refunds().create_refund(
                original,
                idempotency_key=switch_refund_idempotency_key(original),
                reason="requested_by_customer",
                metadata={
                    "note": f"product switch to {payload['product']}",
                    "switched_to_checkout_session": str(payload.get("checkout_session_id") or ""),
                },
            )
        except PaymentsError as exc:
            if exc.code != "already_fully_refunded":
                raise
            # Refunded another way meanwhile (an admin, the Dashboard): nothing left to return,
            # and retrying until the dead-letter queue would only raise a false alarm.
            logger.warning(
                "switch refund skipped: original already refunded",
                extra={"payment_intent": original, "outbox_id": row["id"]},
            )
            return {"already_refunded": True}
        return {
            "refund_id": refund.id,
            "amount": refund.amount,
            "currency": refund.currency,
            "status": refund.status,
        }
    raise DispatchFailed(f"unknown outbox kind {kind}", code="unknown_outbox_kind")
