"""The worker's job for one queued Stripe event: apply it once, then perform what it queued.

1. ``parse_event`` + ``interpret_event`` (``payments.webhooks``): the SQL call's parameters.
   An event that can never be applied (malformed for its type, or sent in the other Stripe
   mode than our key's) is *refused*: claimed once in the ledger as refused, acknowledged, and
   never retried.
2. ``process_stripe_event``: claims the event id and applies the effect in one transaction; a
   duplicate changes nothing.
3. What needs a person alerts (Sentry and an error log line): a dispute opened, a payment for
   something the member already held (refunded automatically), a refund that failed.
4. The pending outbox rows of the batch's events are leased in one call, performed at once
   (Make.com ``add_project`` and ``payment_failed`` concurrently; a product-switch or duplicate
   refund, the cancellation of a duplicate subscription or of one whose first payment failed
   one after another, beside them) and marked sent in one call. This runs for duplicates too:
   a message redelivered after a Make.com outage finds the event applied but its dispatch
   still pending. A failed dispatch is released with its error code and fails the messages of
   its event only, so SQS retries those; the reconciler performs whatever is left pending
   (``payments.reconcile``).

Ports are parameters (``WorkerPorts``), so tests pass real stores and local stand-ins.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from payments.adapters.store import Store
from payments.dispatches import MAKE_KINDS, make_payload
from payments.errors import PaymentsError
from payments.models import IssuedRefund
from payments.observability import alert, logger
from payments.webhooks import (
    EventEffect,
    MalformedEvent,
    event_from_dict,
    interpret_event,
    parse_event,
    refused_effect,
    with_subscription_state,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

# Longer than the worker's timeout: a lease never expires while its holder may still send.
OUTBOX_LEASE_SECONDS = 120
# Make.com documents posted at once: a batch of ten events queues about one each, and more
# threads than that would only wait on the same connection pool.
MAX_CONCURRENT_DISPATCHES = 8

Outcome = Literal["applied", "stale", "ignored", "refused", "duplicate", "unreadable"]


class MakeDispatcher(Protocol):
    def send(self, payload: Mapping[str, Any]) -> None: ...


class SubscriptionSource(Protocol):
    def retrieve_subscription(self, subscription_id: str) -> Mapping[str, Any]: ...


class RefundIssuer(Protocol):
    """The Stripe calls the worker makes on its own: refunds and duplicate cancellations."""

    def create_refund(
        self,
        payment_intent: str,
        *,
        idempotency_key: str,
        amount: int | None = None,
        reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> IssuedRefund: ...

    def cancel_subscription_now(self, subscription_id: str, idempotency_key: str) -> None: ...

    def invoice_payment_intent(self, invoice_id: str) -> str | None: ...


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
    # The mode of our Stripe key (None: unknown, accept both). An event of the other mode is a
    # misconfigured endpoint (a live endpoint posting to a test deployment, or the reverse).
    livemode: bool | None = None
    allow_repeat_purchases: bool = False


def key_livemode(secret_key: str) -> bool | None:
    """Whether a Stripe secret (or restricted) key is a live-mode key; None if unrecognised."""
    if secret_key.startswith(("sk_live_", "rk_live_")):
        return True
    if secret_key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


@dataclass(frozen=True)
class ProcessedEvent:
    event_id: str
    event_type: str
    outcome: Outcome
    dispatched: int


class DispatchFailed(PaymentsError):
    """At least one side effect of the event failed; the message must be retried."""

    code = "dispatch_failed"
    # What each failed dispatch met (an outage, or a refusal tied to that one row).
    causes: tuple[PaymentsError, ...] = ()


def switch_refund_idempotency_key(payment_intent: str) -> str:
    return f"switch-refund:{payment_intent}"


def duplicate_refund_idempotency_key(payment_intent: str) -> str:
    return f"duplicate-refund:{payment_intent}"


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
            effect = effect_of(body, ports)
        except MalformedEvent as exc:
            # Not even an event we can name: nothing to record, nothing a retry could fix.
            logger.error("unreadable stripe event message dropped", extra={"reason": exc.message})
            results[message_id] = ProcessedEvent("", "", "unreadable", 0)
            continue
        except PaymentsError as exc:
            results[message_id] = exc
            continue
        effects[message_id] = effect
    # Same order in every worker: racing workers take the ledger's locks in the same order.
    ordered = sorted(effects.items(), key=lambda item: item[1].event.id)
    if not ordered:
        return results
    try:
        committed = _apply_in_database(ordered, ports)
    except Exception as exc:  # noqa: BLE001 - every message of the batch fails with it
        return {**results, **{message_id: exc for message_id, _ in ordered}}
    due: list[tuple[str, str]] = []
    for message_id, effect, result in committed:
        if result.get("outcome") == "error":
            results[message_id] = EventRefused(
                f"the database refused the event (SQLSTATE {result.get('sqlstate')})"
            )
            continue
        try:
            results[message_id] = _after_commit(effect, result)
        except Exception as exc:  # noqa: BLE001 - reported for this message only
            results[message_id] = exc
            continue
        # Only events that queued a side effect (or a duplicate whose dispatch is still owed)
        # need the outbox; absent the flag, look anyway.
        if result.get("pending_outbox", True):
            due.append((message_id, effect.event.id))
    if due:
        _dispatch_batch(due, results, ports)
    return results


# Two workers' batches locking the same member's rows in opposite orders: Postgres rolls one
# event back. Once our batch has committed, its locks are gone and the event goes through.
_RETRY_AT_ONCE = frozenset({"40P01", "40001"})


def _apply_in_database(
    ordered: list[tuple[str, EventEffect]], ports: WorkerPorts
) -> list[tuple[str, EventEffect, dict[str, Any]]]:
    outcomes = ports.store.call(
        "process_stripe_events", p_events=[effect.batch_item() for _, effect in ordered]
    )
    applied = [
        (message_id, effect, result)
        for (message_id, effect), result in zip(ordered, outcomes, strict=True)
    ]
    again = [
        (message_id, effect)
        for message_id, effect, result in applied
        if result.get("outcome") == "error" and result.get("sqlstate") in _RETRY_AT_ONCE
    ]
    if not again:
        return applied
    logger.info("retrying events rolled back by a lock conflict", extra={"events": len(again)})
    retried = ports.store.call(
        "process_stripe_events", p_events=[effect.batch_item() for _, effect in again]
    )
    second = {message_id: result for (message_id, _), result in zip(again, retried, strict=True)}
    return [
        (message_id, effect, second.get(message_id, result))
        for message_id, effect, result in applied
    ]


def effect_of(body: str | Mapping[str, Any], ports: WorkerPorts) -> EventEffect:
    """What to hand the database for one queued event (JSON text or an already decoded dict).

    Raises ``MalformedEvent`` when the body is not a Stripe event at all. An event of a handled
    type that cannot be applied becomes a *refuse* effect: recorded once, never retried.
    """
    event = parse_event(body) if isinstance(body, str) else event_from_dict(dict(body))
    if None not in (ports.livemode, event.livemode) and event.livemode != ports.livemode:
        alert(
            "stripe event of the other mode refused: check the webhook endpoint",
            stripe_event_id=event.id,
            stripe_event_type=event.type,
            event_livemode=event.livemode,
        )
        return refused_effect(event, "livemode_mismatch")
    try:
        effect = interpret_event(event, allow_repeat_purchases=ports.allow_repeat_purchases)
    except MalformedEvent as exc:
        logger.warning(
            "stripe event refused as malformed",
            extra={
                "stripe_event_id": event.id,
                "stripe_event_type": event.type,
                "reason": exc.message,
            },
        )
        return refused_effect(event, exc.message)
    return _current(effect, ports)


def _current(effect: EventEffect, ports: WorkerPorts) -> EventEffect:
    """An effect with its subscription as Stripe holds it now.

    For a subscription event, whichever of two same-second events is applied last then writes
    the newest state, and an older event (earlier ``created``) is still refused by the SQL
    guard. An invoice event brings the subscription's state along (``past_due`` after a failed
    renewal) and names the plan by the price Stripe bills.
    """
    if ports.subscriptions is None:
        return effect
    if effect.action == "subscription" and effect.object_id:
        current = ports.subscriptions().retrieve_subscription(effect.object_id)
        return interpret_event(
            replace(effect.event, object=current),
            allow_repeat_purchases=ports.allow_repeat_purchases,
        )
    subscription_id = effect.data.get("subscription_id")
    if effect.action == "invoice" and subscription_id:
        current = ports.subscriptions().retrieve_subscription(str(subscription_id))
        return with_subscription_state(effect, current)
    return effect


def process_event_message(body: str, ports: WorkerPorts) -> ProcessedEvent:
    """Apply one queued Stripe event exactly once in effect and perform its side effects."""
    result = process_event_batch({"message": body}, ports)["message"]
    if isinstance(result, Exception):
        raise result
    return result


def _after_commit(effect: EventEffect, result: Mapping[str, Any]) -> ProcessedEvent:
    event = effect.event
    outcome: Outcome = result["outcome"]
    log_context = {"stripe_event_id": event.id, "stripe_event_type": event.type}
    if outcome == "ignored":
        logger.info("stripe event ignored", extra=log_context)
    else:
        logger.info("stripe event processed", extra={**log_context, "outcome": outcome})
    if outcome == "applied":
        _alert_if_needed(effect, result)
    return ProcessedEvent(event.id, event.type, outcome, 0)


def _alert_if_needed(effect: EventEffect, result: Mapping[str, Any]) -> None:
    event, data = effect.event, effect.data
    if result.get("duplicate"):
        alert(
            "payment for something the member already holds: refunding it in full",
            stripe_event_id=event.id,
            member_id=result.get("member_id"),
            product=result.get("product"),
            mode=result.get("mode"),
            checkout_session=data.get("checkout_session_id"),
            payment_intent=data.get("payment_intent"),
            subscription=data.get("subscription"),
        )
    if effect.action == "refund" and event.type == "refund.failed":
        refund = data.get("refund") or {}
        alert(
            "a refund failed: the money was not returned",
            stripe_event_id=event.id,
            refund_id=refund.get("id"),
            payment_intent=refund.get("payment_intent"),
            amount=refund.get("amount"),
            currency=refund.get("currency"),
            member_id=result.get("member_id"),
        )
    if effect.action != "dispute":
        return
    context = {
        "stripe_event_id": event.id,
        "dispute_id": data.get("dispute_id"),
        "payment_intent": data.get("payment_intent"),
        "amount": data.get("amount"),
        "currency": data.get("currency"),
        "reason": data.get("reason"),
        "dispute_status": data.get("status"),
        "evidence_due_by": data.get("evidence_due_by"),
        "member_id": result.get("member_id"),
    }
    if event.type == "charge.dispute.created":
        alert("payment disputed: submit evidence before the deadline", **context)
    elif event.type == "charge.dispute.closed":
        logger.warning("dispute closed", extra=context)


def _dispatch_batch(
    due: list[tuple[str, str]], results: dict[str, MessageResult], ports: WorkerPorts
) -> None:
    """Perform the pending outbox rows of these ``(message id, event id)`` pairs; each message
    keeps its result, or gets its event's dispatch failure."""
    event_ids = sorted({event_id for _, event_id in due})
    try:
        rows = ports.store.call(
            "claim_batch_dispatches", p_event_ids=event_ids, p_lease_seconds=OUTBOX_LEASE_SECONDS
        )
    except Exception as exc:  # noqa: BLE001 - nothing claimed: every message due retries
        for message_id, _ in due:
            results[message_id] = exc
        return
    try:
        attempts = perform_leased(rows or [], ports)
    except Exception as exc:  # noqa: BLE001 - not recorded: the messages of those rows retry
        claimed = {str(row.get("event_id")) for row in rows or []}
        for message_id, event_id in due:
            if event_id in claimed:
                results[message_id] = exc
        return
    by_event: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_event.setdefault(str(attempt.row.get("event_id")), []).append(attempt)
    counted: set[str] = set()
    for message_id, event_id in due:
        mine = by_event.get(event_id, [])
        failure = failure_of(mine)
        if failure is not None:
            # Every message of the event fails: one of them must come back to retry it.
            results[message_id] = failure
            continue
        processed = results[message_id]
        if isinstance(processed, ProcessedEvent) and event_id not in counted:
            counted.add(event_id)
            results[message_id] = replace(processed, dispatched=len(mine))


def perform_dispatches(rows: list[Mapping[str, Any]], ports: WorkerPorts) -> int:
    """Perform leased outbox rows and mark each sent, or release it with its error code.

    Every row is tried; raises ``DispatchFailed`` afterwards if any of them failed (or the
    unexpected error one of them met).
    """
    attempts = perform_leased(rows, ports)
    failure = failure_of(attempts)
    if failure is not None:
        raise failure
    return len(attempts)


@dataclass(frozen=True)
class Attempt:
    """One leased row, performed: ``result`` to record when sent, or the ``error`` it met."""

    row: Mapping[str, Any]
    result: dict[str, Any] | None = None
    error: Exception | None = None


class DispatchNotRecorded(PaymentsError):
    """Performed, but the database could not mark it sent: the row stays leased, and the next
    attempt after its lease sends it again with the same idempotency key."""

    code = "dispatch_not_recorded"


def perform_leased(rows: list[Mapping[str, Any]], ports: WorkerPorts) -> list[Attempt]:
    """Perform every leased row at once, mark the sent ones sent in one call, release each
    failure with its error code; the attempts, in the rows' order.

    Raises when the completion call itself fails: nothing is known to be recorded then, and
    the sent rows stay leased until their lease ends (the failures are released all the same).
    """
    attempts = _perform_all(rows, ports)
    sent = [a for a in attempts if a.error is None]
    recorded: dict[int, Mapping[str, Any]] = {}
    not_recorded: Exception | None = None
    if sent:
        # First: a dispatch Make.com or Stripe accepted must be marked before anything else
        # can fail.
        try:
            answers = ports.store.call(
                "complete_outbox_dispatches",
                p_dispatches=[{"id": a.row["id"], "result": a.result or {}} for a in sent],
            )
            recorded = {int(answer["id"]): answer for answer in answers or []}
        except Exception as exc:  # noqa: BLE001 - raised below, once the failures are released
            not_recorded = exc
    final = []
    for attempt in attempts:
        row = attempt.row
        context = {
            "stripe_event_id": row.get("event_id"),
            "kind": row["kind"],
            "outbox_id": row["id"],
        }
        if attempt.error is None:
            answer = recorded.get(int(row["id"]), {})
            if not_recorded is None and answer.get("error"):
                logger.error(
                    "outbox dispatch sent but not recorded",
                    extra={**context, "sqlstate": answer["error"]},
                )
                attempt = replace(attempt, error=DispatchNotRecorded())
            elif not_recorded is None:
                logger.info("outbox dispatch sent", extra=context)
        else:
            code = attempt.error.code if isinstance(attempt.error, PaymentsError) else "unexpected"
            _release(row, code, context, ports)
        final.append(attempt)
    if not_recorded is not None:
        raise not_recorded
    return final


def _release(
    row: Mapping[str, Any], code: str, context: Mapping[str, Any], ports: WorkerPorts
) -> None:
    """Free a failed row at once for the retry of its event, with its error code. A release
    that fails leaves the row leased until its lease ends; its message fails either way."""
    logger.warning(
        "outbox dispatch failed", extra={**context, "attempts": row["attempts"], "code": code}
    )
    try:
        ports.store.call("release_outbox_dispatch", p_id=row["id"], p_error=code)
    except Exception as exc:  # noqa: BLE001 - logged; the message already fails for this row
        logger.warning(
            "outbox dispatch not released: retried once its lease ends",
            extra={**context, "error": type(exc).__name__},
        )


def failure_of(attempts: list[Attempt]) -> Exception | None:
    """What the message owning these attempts fails with: an unexpected error as it is, else
    ``DispatchFailed`` naming each failure's code; None when every one was sent."""
    errors = [a.error for a in attempts if a.error is not None]
    for error in errors:
        if not isinstance(error, PaymentsError):
            return error
    if not errors:
        return None
    causes = [e for e in errors if isinstance(e, PaymentsError)]
    failed = DispatchFailed(
        f"{len(causes)} dispatch(es) failed: {', '.join(e.code for e in causes)}"
    )
    failed.causes = tuple(causes)
    return failed


def _perform_all(rows: list[Mapping[str, Any]], ports: WorkerPorts) -> list[Attempt]:
    """Each row performed once. Make.com documents go out concurrently (each with its own
    idempotency key; their order never mattered). Stripe's side effects (refunds,
    cancellations) run one after another in id order, as one task beside them: they are rare,
    and two of them may touch the same payment."""
    make = [i for i, row in enumerate(rows) if row["kind"] in MAKE_KINDS]
    stripe = [i for i, row in enumerate(rows) if row["kind"] not in MAKE_KINDS]
    lanes: list[list[int]] = [[i] for i in make] + ([stripe] if stripe else [])
    if len(lanes) <= 1:
        return [_attempt(row, ports) for row in rows]
    executor = _executor()
    # Each task runs in a copy of this thread's context: the invocation's deadline (a context
    # variable) bounds the retries made in the pool's threads too.
    futures = [
        executor.submit(contextvars.copy_context().run, _attempt_lane, rows, lane, ports)
        for lane in lanes
    ]
    attempts: dict[int, Attempt] = {}
    for future in futures:
        attempts.update(future.result())
    return [attempts[i] for i in range(len(rows))]


def _attempt_lane(
    rows: list[Mapping[str, Any]], lane: list[int], ports: WorkerPorts
) -> dict[int, Attempt]:
    return {i: _attempt(rows[i], ports) for i in lane}


def _attempt(row: Mapping[str, Any], ports: WorkerPorts) -> Attempt:
    try:
        return Attempt(row, result=_perform(row, ports))
    except Exception as exc:  # noqa: BLE001 - judged by failure_of, after every row was tried
        return Attempt(row, error=exc)


_executor_lock = threading.Lock()
_executor_instance: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """This container's dispatch threads, started by the first batch owing more than one
    dispatch (the worker's cold start, and the reconciler's drain of one row at a time, never
    need them)."""
    global _executor_instance
    with _executor_lock:
        if _executor_instance is None:
            from concurrent.futures import ThreadPoolExecutor

            _executor_instance = ThreadPoolExecutor(
                max_workers=MAX_CONCURRENT_DISPATCHES, thread_name_prefix="dispatch"
            )
        return _executor_instance


def _idempotency_key(row: Mapping[str, Any]) -> str:
    # The dedupe key names the dispatch itself; rows from before it was returned fall back to
    # the event that queued them.
    return str(row.get("dedupe_key") or row.get("event_id") or row["id"])


def _perform(row: Mapping[str, Any], ports: WorkerPorts) -> dict[str, Any]:
    kind, payload = row["kind"], row["payload"]
    if kind in MAKE_KINDS:
        ports.make.send(make_payload(kind, _idempotency_key(row), payload))
        return {}
    if kind == "switch_refund":
        original = str(payload["payment_intent"])
        return _refund(
            ports,
            row,
            original,
            idempotency_key=switch_refund_idempotency_key(original),
            reason="requested_by_customer",
            metadata={
                "note": f"product switch to {payload['product']}",
                "switched_to_checkout_session": str(payload.get("checkout_session_id") or ""),
            },
        )
    if kind == "duplicate_refund":
        payment_intent = payload.get("payment_intent")
        if not payment_intent:
            raise DispatchFailed(
                "the duplicate payment has no payment intent yet", code="payment_intent_unknown"
            )
        return _refund(
            ports,
            row,
            str(payment_intent),
            idempotency_key=duplicate_refund_idempotency_key(str(payment_intent)),
            reason="duplicate",
            metadata=_duplicate_metadata(payload),
        )
    if kind == "duplicate_subscription":
        return _undo_duplicate_subscription(row, ports)
    if kind == "cancel_unpaid_subscription":
        subscription = str(payload["subscription"])
        ports.refunds().cancel_subscription_now(subscription, f"unpaid-cancel:{subscription}")
        return {}
    raise DispatchFailed(f"unknown outbox kind {kind}", code="unknown_outbox_kind")


def _duplicate_metadata(payload: Mapping[str, Any]) -> dict[str, str]:
    return {
        "note": f"automatic refund: {payload.get('product')} already held",
        "checkout_session": str(payload.get("checkout_session_id") or ""),
    }


def _refund(
    ports: WorkerPorts,
    row: Mapping[str, Any],
    payment_intent: str,
    *,
    idempotency_key: str,
    reason: Literal["duplicate", "requested_by_customer"],
    metadata: dict[str, str],
) -> dict[str, Any]:
    """A full refund the service issues on its own; a payment already refunded another way
    (an admin, the Dashboard) leaves nothing to return, which is not a failure."""
    try:
        refund = ports.refunds().create_refund(
            payment_intent, idempotency_key=idempotency_key, reason=reason, metadata=metadata
        )
    except PaymentsError as exc:
        if exc.code != "already_fully_refunded":
            raise
        # Retrying until the dead-letter queue would only raise a false alarm.
        logger.warning(
            "automatic refund skipped: payment already refunded",
            extra={"payment_intent": payment_intent, "outbox_id": row["id"], "kind": row["kind"]},
        )
        return {"already_refunded": True, "payment_intent": payment_intent}
    return {
        "refund_id": refund.id,
        "payment_intent": payment_intent,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status,
    }


def _undo_duplicate_subscription(row: Mapping[str, Any], ports: WorkerPorts) -> dict[str, Any]:
    """Cancel a second live subscription at once and refund its first payment in full."""
    payload = row["payload"]
    subscription = payload.get("subscription")
    if not subscription:
        raise DispatchFailed(
            "the duplicate subscription is not known yet", code="subscription_unknown"
        )
    stripe = ports.refunds()
    stripe.cancel_subscription_now(str(subscription), f"duplicate-cancel:{subscription}")
    # What the checkout charged is its first invoice's payment (not a later renewal's).
    invoice = payload.get("invoice")
    payment_intent = stripe.invoice_payment_intent(str(invoice)) if invoice else None
    if payment_intent is None:
        # Nothing was charged (a free first period): cancelling was all there was to undo.
        return {}
    return _refund(
        ports,
        row,
        payment_intent,
        idempotency_key=duplicate_refund_idempotency_key(payment_intent),
        reason="duplicate",
        metadata=_duplicate_metadata(payload),
    )
