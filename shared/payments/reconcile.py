"""The reconciler: the scheduled job that heals what deliveries alone cannot, and says what it
could not. Nothing here is needed on a good day; everything here is what a small business has
no operator for.

Each run, within its time budget (it stops starting work when the budget runs out and keeps
what it did):

1. **Drain the outbox.** Dispatches still pending a few minutes after they were queued (Make.com
   was down longer than the queue's five receives, a message was lost) are leased and performed
   with the worker's own code and lease rules, so an outage heals itself once Make.com is back.
2. **Catch up with Stripe.** The events created since the stored watermark (and at least a few
   minutes old, so that their delivery had its chance) are listed from Stripe; those the ledger
   has not seen go through the worker's processing, in batches, exactly as if delivered (the
   event-id dedupe makes a race with a late delivery harmless). The watermark moves only once a
   listing finished and every event in it was applied, so a run cut short starts again from the
   same place.
3. **Check drift.** Objects whose state may be stale in our tables (checkouts still open or
   settling past their session's expiry, live subscriptions whose period ended, refunds still
   pending) are re-read from Stripe and applied through the same SQL, as an event stamped now
   whose id names the object and the state read (a correction repeated by the next run is a
   duplicate).
4. **Report.** The run's figures are recorded (``reconcile_runs``, read by ``GET
   /v1/admin/pipeline``); the function emits them as metrics and alerts a person when anything
   is stuck: a dispatch pending for over an hour or tried ``STUCK_ATTEMPTS`` times, an event the
   database keeps refusing, an object Stripe could not be asked about.

Stripe unavailable or rate-limiting: the step ends early (the Stripe adapter's bounded retries
never run past the budget), the run is ``partial`` and the next one continues. Two runs never
work at once: a run takes a lease in the database and a second one finding it held does
nothing. Even without the lease, every effect is idempotent (outbox leases, the event ledger).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from payments import errors
from payments.adapters.store import Store
from payments.observability import logger
from payments.webhook_processing import (
    DispatchFailed,
    WorkerPorts,
    perform_dispatches,
    process_event_batch,
)
from payments.webhooks import is_handled

# A dispatch pending this long, or tried this often, needs a person.
STUCK_AGE_SECONDS = 3600
STUCK_ATTEMPTS = 10
# Stripe retries a failed delivery for three days: a first run catches up over that window.
FIRST_LOOKBACK_SECONDS = 3 * 86400
# Listing from a little before the watermark: events of the same second on either side.
WATERMARK_OVERLAP_SECONDS = 300
EVENT_BATCH = 10


class EventSource(Protocol):
    """What the reconciler reads from Stripe (``adapters.stripe_service``)."""

    def list_events(
        self, *, created_gte: int, created_lt: int, starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]: ...

    def retrieve_object(self, kind: str, object_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ReconcilePolicy:
    """How patient the reconciler is. Tests and ``make dev`` shorten the ages."""

    min_dispatch_age_seconds: int = 300
    min_event_age_seconds: int = 300
    refund_age_seconds: int = 3600
    dispatch_batch: int = 50
    candidate_batch: int = 50
    lease_seconds: int = 900


@dataclass(frozen=True)
class ReconcilePorts:
    store: Store
    worker: WorkerPorts
    # Built on first use: a run with nothing to heal never needs Stripe.
    stripe: Callable[[], EventSource]


@dataclass
class ReconcileReport:
    run_id: int | None = None
    status: Literal["ok", "partial", "failed", "skipped"] = "ok"
    dry_run: bool = False
    dispatches_drained: int = 0
    dispatches_failed: int = 0
    events_listed: int = 0
    events_healed: int = 0
    events_refused: int = 0
    drift_checked: int = 0
    drift_corrected: int = 0
    stuck: int = 0
    oldest_pending_dispatch_seconds: int | None = None
    watermark: str | None = None
    notes: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        figures = asdict(self)
        figures.pop("notes")
        return figures


def run_reconcile(
    ports: ReconcilePorts,
    *,
    policy: ReconcilePolicy | None = None,
    has_time: Callable[[], bool] = lambda: True,
    dry_run: bool = False,
    now: Callable[[], float] = time.time,
) -> ReconcileReport:
    """One reconcile run: drain, catch up, check drift, report. Never raises for an upstream
    that fails: the report says ``partial`` and why."""
    policy = policy or ReconcilePolicy()
    report = ReconcileReport(dry_run=dry_run)
    begun = ports.store.call(
        "begin_reconcile_run", p_lease_seconds=policy.lease_seconds, p_dry_run=dry_run
    )
    if begun.get("busy"):
        logger.info("reconcile skipped: another run holds the lease")
        report.status = "skipped"
        return report
    report.run_id = int(begun["run_id"])
    steps: list[tuple[str, Callable[[], None]]] = [
        ("outbox", lambda: _drain_outbox(ports, policy, report, has_time, dry_run)),
        ("events", lambda: _catch_up(ports, policy, report, has_time, dry_run, now)),
        ("drift", lambda: _check_drift(ports, policy, report, has_time, dry_run, now)),
    ]
    error: str | None = None
    for name, step in steps:
        if not has_time():
            report.status = "partial"
            report.notes.append(f"{name}: out of time")
            break
        try:
            step()
        except errors.PaymentsError as exc:
            # An upstream that failed past its retries: keep what was done, go on next run.
            report.status = "partial"
            report.notes.append(f"{name}: {exc.code}")
            logger.warning("reconcile step ended early", extra={"step": name, "code": exc.code})
        except Exception as exc:
            # Recorded, then raised: the invocation errors and the function's alarm fires.
            report.status = "failed"
            error = f"{name}: {type(exc).__name__}"
            ports.store.call(
                "finish_reconcile_run",
                p_run_id=report.run_id,
                p_status="failed",
                p_figures=report.figures(),
                p_error=error,
            )
            raise
    _count_stuck(ports, report)
    ports.store.call(
        "finish_reconcile_run",
        p_run_id=report.run_id,
        p_status=report.status,
        p_figures=report.figures(),
        p_error="; ".join(report.notes) or None,
    )
    logger.info("reconcile run finished", extra=report.figures())
    return report


# --- 1. the outbox ------------------------------------------------------------------------


def _drain_outbox(
    ports: ReconcilePorts,
    policy: ReconcilePolicy,
    report: ReconcileReport,
    has_time: Callable[[], bool],
    dry_run: bool,
) -> None:
    if dry_run:
        status = ports.store.call("pipeline_status")
        report.notes.append(f"outbox: {status['dispatches']['pending']} pending")
        return
    while has_time():
        rows = ports.store.call(
            "claim_due_dispatches",
            p_min_age_seconds=policy.min_dispatch_age_seconds,
            p_limit=policy.dispatch_batch,
            p_lease_seconds=120,
        )
        if not rows:
            return
        for row in rows:
            try:
                report.dispatches_drained += perform_dispatches([row], ports.worker)
            except errors.PaymentsError:
                # Released with its error code by perform_dispatches; tried again next run.
                report.dispatches_failed += 1
        if len(rows) < policy.dispatch_batch:
            return


# --- 2. Stripe's events -------------------------------------------------------------------


def _catch_up(
    ports: ReconcilePorts,
    policy: ReconcilePolicy,
    report: ReconcileReport,
    has_time: Callable[[], bool],
    dry_run: bool,
    now: Callable[[], float],
) -> None:
    # Exclusive: events of the current second are in when no minimum age is asked for.
    upper = int(now()) - policy.min_event_age_seconds + 1
    stored = ports.store.call("reconcile_watermark")
    start = (
        int(datetime.fromisoformat(str(stored)).timestamp()) - WATERMARK_OVERLAP_SECONDS
        if stored
        else upper - FIRST_LOOKBACK_SECONDS
    )
    if start >= upper:
        return
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    stripe = ports.stripe()
    while True:
        if not has_time():
            report.status = "partial"
            report.notes.append("events: listing cut short, the watermark stays")
            break
        page, more = stripe.list_events(created_gte=start, created_lt=upper, starting_after=cursor)
        listed += [e for e in page if is_handled(str(e.get("type")))]
        if not more or not page:
            cursor = None
            break
        cursor = str(page[-1]["id"])
    report.events_listed = len(listed)
    complete = cursor is None and report.status != "partial"
    unseen = set(ports.store.call("unseen_events", p_ids=[e["id"] for e in listed]) or [])
    missing = sorted(
        (e for e in listed if e["id"] in unseen), key=lambda e: (e["created"], e["id"])
    )
    if dry_run:
        report.notes.append(f"events: {len(missing)} of {len(listed)} never applied")
        return
    for start_at in range(0, len(missing), EVENT_BATCH):
        if not has_time():
            complete = False
            report.status = "partial"
            break
        batch = missing[start_at : start_at + EVENT_BATCH]
        results = process_event_batch({e["id"]: json.dumps(e) for e in batch}, ports.worker)
        for event_id, result in results.items():
            if isinstance(result, DispatchFailed):
                # Applied; what it queued stays in the outbox, which the next run drains.
                report.events_healed += 1
            elif isinstance(result, Exception):
                complete = False
                report.events_refused += 1
                logger.warning(
                    "reconcile could not apply a missed event",
                    extra={"stripe_event_id": event_id, "reason": type(result).__name__},
                )
            elif result.outcome != "duplicate":
                report.events_healed += 1
    if complete:
        ports.store.call(
            "save_reconcile_watermark", p_created=datetime.fromtimestamp(upper, tz=UTC).isoformat()
        )
        report.watermark = datetime.fromtimestamp(upper, tz=UTC).isoformat()


# --- 3. drift -----------------------------------------------------------------------------


def _synthetic_event(kind: str, obj: Mapping[str, Any], created: int) -> dict[str, Any] | None:
    """The event that brings our tables to ``obj``'s current state, or None if nothing to do.

    Its id is derived from the object and the state read: the same correction read again is a
    duplicate in the ledger, a new state is a new correction."""
    status = obj.get("status")
    if kind == "checkout_session":
        if status == "expired":
            event_type = "checkout.session.expired"
        elif status == "complete" and obj.get("payment_status") in ("paid", "no_payment_required"):
            event_type = "checkout.session.completed"
        else:
            return None
    elif kind == "subscription":
        event_type = (
            "customer.subscription.deleted"
            if status in ("canceled", "incomplete_expired")
            else "customer.subscription.updated"
        )
    else:
        event_type = "refund.failed" if status == "failed" else "refund.updated"
    state = json.dumps([obj.get("id"), event_type, status, obj.get("payment_status")])
    digest = hashlib.sha256(state.encode()).hexdigest()[:24]
    return {
        "id": f"evt_reconcile_{digest}",
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": obj.get("livemode"),
        "data": {"object": dict(obj)},
    }


def _check_drift(
    ports: ReconcilePorts,
    policy: ReconcilePolicy,
    report: ReconcileReport,
    has_time: Callable[[], bool],
    dry_run: bool,
    now: Callable[[], float],
) -> None:
    candidates = ports.store.call(
        "reconcile_candidates",
        p_limit=policy.candidate_batch,
        p_refund_age_seconds=policy.refund_age_seconds,
    )
    work = [
        (kind, str(object_id))
        for kind, key in (
            ("checkout_session", "sessions"),
            ("subscription", "subscriptions"),
            ("refund", "refunds"),
        )
        for object_id in candidates.get(key) or []
    ]
    if dry_run:
        report.notes.append(f"drift: {len(work)} object(s) to re-read")
        return
    events: list[dict[str, Any]] = []
    stripe = ports.stripe()
    for kind, object_id in work:
        if not has_time():
            report.status = "partial"
            break
        report.drift_checked += 1
        try:
            current = stripe.retrieve_object(kind, object_id)
        except errors.NotFound:
            report.notes.append(f"drift: {kind} {object_id} unknown to Stripe")
            report.stuck += 1
            continue
        synthetic = _synthetic_event(kind, current, int(now()))
        if synthetic is not None:
            events.append(synthetic)
    for start_at in range(0, len(events), EVENT_BATCH):
        batch = events[start_at : start_at + EVENT_BATCH]
        results = process_event_batch({e["id"]: json.dumps(e) for e in batch}, ports.worker)
        for result in results.values():
            if isinstance(result, DispatchFailed) or (
                not isinstance(result, Exception) and result.outcome == "applied"
            ):
                report.drift_corrected += 1
            elif isinstance(result, Exception):
                report.events_refused += 1


# --- 4. what is stuck ---------------------------------------------------------------------


def _count_stuck(ports: ReconcilePorts, report: ReconcileReport) -> None:
    status = ports.store.call("pipeline_status")
    dispatches = status["dispatches"]
    age = dispatches.get("oldest_pending_age_seconds")
    report.oldest_pending_dispatch_seconds = int(age) if age is not None else None
    stuck = ports.store.call(
        "stuck_dispatches", p_age_seconds=STUCK_AGE_SECONDS, p_attempts=STUCK_ATTEMPTS
    )
    report.stuck += int(stuck or 0) + report.events_refused
