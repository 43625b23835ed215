"""The reconciler: the scheduled job that heals what deliveries alone cannot, and says what it
could not. Nothing here is needed on a good day; everything here is what a small business has
no operator for.

Each run, within its time budget (it stops starting work when the budget runs out and keeps
what it did):

1. **Drain the outbox.** Dispatches still pending a few minutes after they were queued (Make.com
   was down longer than the queue's five receives, a message was lost) are leased one at a time,
   each with its own lease, and performed with the worker's own code, oldest first, each at
   most once a run. After ``GIVE_UP_AFTER`` outages in a row of one far side (Make.com, or one
   kind of Stripe refund or cancellation) its rows wait for the next run: the far side is down,
   and the other steps must still run. A refusal tied to one row (a disputed payment, a 4xx
   from Make.com) does not count: the rows behind it are still tried. A row that fails
   unexpectedly (a bug, a payload that cannot be read) is released with the code
   ``unexpected``, counted as stuck, and the drain goes on with the next row.
2. **Catch up with Stripe.** The events created since the stored watermark (and at least a few
   minutes old, so that their delivery had its chance) are listed from Stripe; those the ledger
   has not seen go through the worker's processing, in batches, exactly as if delivered (the
   event-id dedupe makes a race with a late delivery harmless). Stripe lists an event at the
   API version the account had when it was created, not at the version we pin: an event of
   another version keeps its id, type and time, and its object is re-read from Stripe at the
   pinned version. The watermark moves only once a listing finished and every event in it was
   applied (or refused for good), so a run cut short starts again from the same place.
3. **Check drift.** Objects whose state may be stale in our tables (checkouts still open or
   settling past their session's expiry, live subscriptions whose period ended, refunds still
   pending) are re-read from Stripe, least recently re-read first, and applied through the same
   SQL, as an event stamped now whose id is a hash of the object read (the same state read
   again is a duplicate; any change is a new correction). A bank debit that failed is applied
   as the failed payment it is. An object re-read ``DRIFT_STUCK_AFTER`` runs in a row with
   nothing applied, while Stripe is not still settling it, counts as stuck.
4. **Report.** The run's figures are recorded (``reconcile_runs``, read by ``GET
   /v1/admin/pipeline``); the function emits them as metrics and alerts a person when anything
   is stuck: a dispatch pending for over an hour, tried ``STUCK_ATTEMPTS`` times or failing
   unexpectedly, an event the database keeps refusing, an object Stripe could not be asked
   about or whose correction never applies.

Stripe unavailable or rate-limiting: the step ends early (the Stripe adapter's bounded retries
never run past the budget), the run is ``partial`` and the next one continues. Two runs never
work at once: a run takes a lease in the database (the function's timeout and a margin, so a
killed run frees it before the next schedule, and the next run records it as failed) and a
second one finding it held does nothing but say so. Even without the lease, every effect is
idempotent (outbox leases, the event ledger).
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
from payments.dispatches import MAKE_KINDS
from payments.observability import logger
from payments.webhook_processing import (
    OUTBOX_LEASE_SECONDS,
    DispatchFailed,
    MessageResult,
    WorkerPorts,
    perform_dispatches,
    process_event_batch,
)
from payments.webhooks import is_handled

# A dispatch pending this long, or tried this often, needs a person.
STUCK_AGE_SECONDS = 3600
STUCK_ATTEMPTS = 10
# Failures in a row of one far side after which its dispatches wait for the next run.
GIVE_UP_AFTER = 3
# Runs in a row re-reading an object with nothing applied after which it needs a person.
DRIFT_STUCK_AFTER = 4
# Stripe retries a failed delivery for three days: a first run catches up over that window.
FIRST_LOOKBACK_SECONDS = 3 * 86400
# Listing from a little before the watermark: events of the same second on either side.
WATERMARK_OVERLAP_SECONDS = 300
EVENT_BATCH = 10
# The run lease beyond the function's timeout: a run cannot outlive its timeout, so a lease of
# the timeout and this margin is free again before the next schedule however the run ended.
LEASE_MARGIN_SECONDS = 60


class EventSource(Protocol):
    """What the reconciler reads from Stripe (``adapters.stripe_service``)."""

    @property
    def api_version(self) -> str: ...

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
    candidate_batch: int = 50
    # The deployed function's timeout (300 s) and the margin; the handler passes its own.
    lease_seconds: int = 300 + LEASE_MARGIN_SECONDS


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
    # Recorded once as refused (malformed, the other Stripe mode): never applied, never retried.
    events_refused: int = 0
    # Rolled back by the database (or failing unexpectedly): tried again next run, and stuck.
    events_failed: int = 0
    # Listed at another API version than ours: their object was re-read at ours.
    events_reread: int = 0
    drift_checked: int = 0
    drift_corrected: int = 0
    stuck: int = 0
    oldest_pending_dispatch_seconds: int | None = None
    watermark: str | None = None
    # A run that held the lease and never recorded its end (killed at its timeout).
    abandoned_run: int | None = None
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
        # Not silent: two runs overlapping means one outlived its schedule.
        logger.warning(
            "reconcile skipped: another run holds the lease",
            extra={"held_until": begun.get("held_until"), "held_by": begun.get("held_by")},
        )
        report.status = "skipped"
        report.notes.append(f"skipped: run {begun.get('held_by')} holds the lease")
        return report
    report.run_id = int(begun["run_id"])
    if begun.get("abandoned") is not None:
        report.abandoned_run = int(begun["abandoned"])
        report.notes.append(f"run {report.abandoned_run} ended without finishing")
        logger.error(
            "a reconcile run ended without finishing: recorded as failed",
            extra={"run_id": report.abandoned_run},
        )
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


def _far_side(kind: str) -> str:
    return "make" if kind in MAKE_KINDS else "stripe"


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
    # One pass, oldest first: a failed row is released at once and must not be claimed again
    # before the rows behind it. Each row is leased just before it is sent, so its lease covers
    # its own send, never the rows before it.
    after: tuple[str, int] | None = None
    skip: set[str] = set()
    failures_in_a_row = {"make": 0, "stripe": 0}
    while True:
        if not has_time():
            report.status = "partial"
            report.notes.append("outbox: out of time")
            return
        row = ports.store.call(
            "claim_next_dispatch",
            p_min_age_seconds=policy.min_dispatch_age_seconds,
            p_after_created=after[0] if after else None,
            p_after_id=after[1] if after else None,
            p_skip_kinds=sorted(skip),
            p_lease_seconds=OUTBOX_LEASE_SECONDS,
        )
        if not row:
            return
        after = (str(row["created_at"]), int(row["id"]))
        kind = str(row["kind"])
        side = _far_side(kind)
        try:
            report.dispatches_drained += perform_dispatches([row], ports.worker)
            failures_in_a_row[side] = 0
        except errors.PaymentsError as exc:
            # Released with its error code by perform_dispatches; tried again next run.
            report.dispatches_failed += 1
            causes = exc.causes if isinstance(exc, DispatchFailed) else (exc,)
            if not any(isinstance(cause, errors.UpstreamUnavailable) for cause in causes):
                # Refused for this row alone (a disputed payment, a 4xx from Make.com): the
                # far side answers, so the rows behind it are still tried.
                continue
            failures_in_a_row[side] += 1
            if failures_in_a_row[side] >= GIVE_UP_AFTER:
                skip.update(MAKE_KINDS if side == "make" else (kind,))
                note = f"outbox: {side} failing, its dispatches left for the next run"
                if note not in report.notes:
                    report.notes.append(note)
        except Exception as exc:  # noqa: BLE001 - released and counted; the rows behind it go on
            # A poison row (a bug, a payload that cannot be read): released with the code
            # "unexpected" by perform_dispatches. It must not stop the rows behind it.
            report.dispatches_failed += 1
            report.stuck += 1
            report.notes.append(f"outbox: dispatch {row['id']} failed unexpectedly")
            logger.error(
                "outbox dispatch failed unexpectedly",
                extra={
                    "outbox_id": row["id"],
                    "kind": kind,
                    "stripe_event_id": row.get("event_id"),
                    "error": type(exc).__name__,
                },
            )


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
        batch: dict[str, dict[str, Any]] = {}
        for listed_event in missing[start_at : start_at + EVENT_BATCH]:
            event = _at_pinned_version(listed_event, stripe, report)
            if event is None:
                # It cannot become readable: holding the watermark for it would re-list a
                # growing window for as long as Stripe keeps it (30 days). It is counted stuck
                # (an alarm, this run) and left; a late delivery still applies it.
                report.events_failed += 1
            else:
                batch[event["id"]] = event
        results = process_event_batch({i: json.dumps(e) for i, e in batch.items()}, ports.worker)
        for event_id, result in results.items():
            if isinstance(result, DispatchFailed):
                # Applied; what it queued stays in the outbox, which the next run drains.
                report.events_healed += 1
            elif isinstance(result, Exception):
                complete = False
                report.events_failed += 1
                logger.warning(
                    "reconcile could not apply a missed event",
                    extra={"stripe_event_id": event_id, "reason": type(result).__name__},
                )
            elif result.outcome == "refused":
                # Recorded once as refused by the worker's rules (and logged or alerted there).
                report.events_refused += 1
            elif result.outcome != "duplicate":
                report.events_healed += 1
    if complete:
        ports.store.call(
            "save_reconcile_watermark", p_created=datetime.fromtimestamp(upper, tz=UTC).isoformat()
        )
        report.watermark = datetime.fromtimestamp(upper, tz=UTC).isoformat()


def _at_pinned_version(
    event: dict[str, Any], stripe: EventSource, report: ReconcileReport
) -> dict[str, Any] | None:
    """The event as our webhook endpoint would have received it.

    Stripe renders a listed event at the API version the account had when the event was
    created; our endpoint, and every read we make, is pinned. An event of another version keeps
    its id (the ledger's dedupe with a late delivery still holds), type and time, and carries
    its object as Stripe holds it now at our version: the state it applies is at least as new
    as the event's, and the SQL orders states by their time as it does for deliveries. None
    when its object can never be re-read (a kind we do not read, or one Stripe no longer
    knows): logged as an error, counted stuck once, and passed (see ``_catch_up``)."""
    version = event.get("api_version")
    if version is None or version == stripe.api_version:
        return event
    obj = (event.get("data") or {}).get("object") or {}
    kind = str(obj.get("object") or "").replace(".", "_")
    context = {
        "stripe_event_id": event.get("id"),
        "stripe_event_type": event.get("type"),
        "api_version": version,
    }
    if kind not in _REREADABLE or not obj.get("id"):
        logger.error("listed event of another API version cannot be re-read", extra=context)
        report.notes.append(f"events: {event.get('id')} at API version {version}, not applied")
        return None
    try:
        current = stripe.retrieve_object(kind, str(obj["id"]))
    except errors.NotFound:
        logger.error("listed event's object unknown to Stripe", extra=context)
        report.notes.append(f"events: {event.get('id')}'s {kind} unknown to Stripe")
        return None
    report.events_reread += 1
    logger.info("listed event of another API version: its object re-read", extra=context)
    return {**event, "api_version": stripe.api_version, "data": {"object": current}}


# The objects the handled events carry, by ``object`` (``.`` as ``_``): what can be re-read.
_REREADABLE = frozenset(
    {"checkout_session", "payment_intent", "charge", "refund", "dispute", "subscription", "invoice"}
)


# --- 3. drift -----------------------------------------------------------------------------


def _synthetic_event(
    kind: str, obj: Mapping[str, Any], created: int, stripe: EventSource
) -> dict[str, Any] | None:
    """The event that brings our tables to ``obj``'s current state, or None while Stripe
    itself has not settled it (a session still open, a bank debit still processing).

    Its id is a hash of the event type and the whole object read: the same state read again is
    a duplicate in the ledger, any change (a period end, a price, a cancellation) is a new
    correction."""
    status = obj.get("status")
    if kind == "checkout_session":
        event_type = _session_event_type(obj, stripe)
        if event_type is None:
            return None
    elif kind == "subscription":
        event_type = (
            "customer.subscription.deleted"
            if status in ("canceled", "incomplete_expired")
            else "customer.subscription.updated"
        )
    else:
        event_type = "refund.failed" if status == "failed" else "refund.updated"
    state = json.dumps([event_type, obj], sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(state.encode()).hexdigest()[:24]
    return {
        "id": f"evt_reconcile_{digest}",
        "object": "event",
        "api_version": stripe.api_version,
        "type": event_type,
        "created": created,
        "livemode": obj.get("livemode"),
        "data": {"object": dict(obj)},
    }


def _session_event_type(session: Mapping[str, Any], stripe: EventSource) -> str | None:
    status, paid = session.get("status"), session.get("payment_status")
    if status == "expired":
        return "checkout.session.expired"
    if status != "complete":
        return None
    if paid in ("paid", "no_payment_required"):
        return "checkout.session.completed"
    # Complete and unpaid: a bank debit, still settling or failed. The session does not say
    # which; its payment does (or, for a subscription, the subscription its invoice pays).
    intent = _ref(session.get("payment_intent"))
    if intent is not None:
        settled = str(stripe.retrieve_object("payment_intent", intent).get("status"))
        succeeded = settled == "succeeded"
        failed = settled in ("requires_payment_method", "canceled")
    else:
        subscription = _ref(session.get("subscription"))
        if subscription is None:
            return None
        settled = str(stripe.retrieve_object("subscription", subscription).get("status"))
        succeeded = settled in ("active", "trialing")
        failed = settled in ("incomplete_expired", "canceled")
    if succeeded:
        return "checkout.session.async_payment_succeeded"
    if failed:
        return "checkout.session.async_payment_failed"
    return None


def _ref(value: object) -> str | None:
    """An id whether the field holds the id or the expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


# Stripe still working on it: nothing to apply, and nothing a person could do yet.
_SETTLING_REFUND = ("pending", "requires_action")


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
    # Per object: the correction to apply (None: Stripe still settling it), and whether Stripe
    # itself is mid-way (a refund pending), so that nothing applied is not a sign of trouble.
    read: list[tuple[str, str, dict[str, Any] | None, bool]] = []
    stripe = ports.stripe()
    failure: errors.PaymentsError | None = None
    for kind, object_id in work:
        if not has_time():
            report.status = "partial"
            report.notes.append("drift: out of time")
            break
        report.drift_checked += 1
        try:
            current = stripe.retrieve_object(kind, object_id)
            synthetic = _synthetic_event(kind, current, int(now()), stripe)
        except errors.NotFound:
            report.notes.append(f"drift: {kind} {object_id} unknown to Stripe")
            report.stuck += 1
            read.append((kind, object_id, None, True))
            continue
        except errors.PaymentsError as exc:
            # Stripe failing past its retries: apply what was read, the next run goes on.
            failure = exc
            break
        # A pending refund is Stripe mid-way; a subscription Stripe holds paused keeps its
        # ended period until it resumes: neither is a correction that failed to apply.
        settling = (kind == "refund" and current.get("status") in _SETTLING_REFUND) or (
            kind == "subscription" and current.get("status") == "paused"
        )
        read.append((kind, object_id, synthetic, synthetic is None or settling))
    results: dict[str, MessageResult] = {}
    events = [event for _, _, event, _ in read if event is not None]
    for start_at in range(0, len(events), EVENT_BATCH):
        batch = events[start_at : start_at + EVENT_BATCH]
        results.update(process_event_batch({e["id"]: json.dumps(e) for e in batch}, ports.worker))
    checks = []
    for kind, object_id, event, settling in read:
        result = results.get(event["id"]) if event is not None else None
        applied = isinstance(result, DispatchFailed) or (
            result is not None and not isinstance(result, Exception) and result.outcome == "applied"
        )
        if applied:
            report.drift_corrected += 1
        elif isinstance(result, Exception):
            report.events_failed += 1
        elif result is not None and result.outcome == "refused":
            report.events_refused += 1
        checks.append({"kind": kind, "id": object_id, "unchanged": not applied and not settling})
    if checks:
        stuck = int(
            ports.store.call(
                "record_drift_checks", p_checks=checks, p_stuck_after=DRIFT_STUCK_AFTER
            )
            or 0
        )
        if stuck:
            report.stuck += stuck
            report.notes.append(
                f"drift: {stuck} object(s) re-read {DRIFT_STUCK_AFTER} runs with nothing applied"
            )
    if failure is not None:
        raise failure


# --- 4. what is stuck ---------------------------------------------------------------------


def _count_stuck(ports: ReconcilePorts, report: ReconcileReport) -> None:
    status = ports.store.call("pipeline_status")
    dispatches = status["dispatches"]
    age = dispatches.get("oldest_pending_age_seconds")
    report.oldest_pending_dispatch_seconds = int(age) if age is not None else None
    stuck = ports.store.call(
        "stuck_dispatches", p_age_seconds=STUCK_AGE_SECONDS, p_attempts=STUCK_ATTEMPTS
    )
    report.stuck += int(stuck or 0) + report.events_failed
