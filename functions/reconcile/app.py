"""Reconciler (EventBridge schedule, every 15 minutes by default): heals what deliveries alone
cannot and alerts on what it could not (``payments.reconcile``).

``{"dry_run": true}`` only says what it would do. The run stops starting work when less than
``TIME_MARGIN_MS`` is left; what it did is kept and the next run continues. Its lease in the
database is the time this invocation has and ``LEASE_MARGIN_SECONDS``: never the schedule, so
the next scheduled run finds it free even after this one was killed at its timeout.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments.adapters.make import get_make_webhook
from payments.adapters.store import get_store
from payments.deadline import start_invocation
from payments.observability import alert, logger, metrics
from payments.reconcile import (
    LEASE_MARGIN_SECONDS,
    ReconcilePolicy,
    ReconcilePorts,
    ReconcileReport,
    run_reconcile,
)
from payments.runtime import bootstrap
from payments.settings import Settings
from payments.webhook_processing import WorkerPorts, key_livemode

if TYPE_CHECKING:
    from payments.adapters.stripe_service import StripeService

REQUIRED = ("stripe_secret_key", "make_webhook_url", "make_api_key")
# Room for the report after the last step, and for a Stripe call in flight to finish.
TIME_MARGIN_MS = 30_000


@lru_cache(maxsize=1)
def _ports(settings: Settings) -> ReconcilePorts:
    def stripe() -> StripeService:
        from payments.adapters.stripe_service import get_stripe

        return get_stripe(settings)

    worker = WorkerPorts(
        store=get_store(settings),
        make=get_make_webhook(settings),
        refunds=stripe,
        subscriptions=stripe,
        livemode=key_livemode(settings.value("stripe_secret_key")),
        allow_repeat_purchases=settings.allow_repeat_purchases,
    )
    return ReconcilePorts(store=worker.store, worker=worker, stripe=stripe)


def emit(report: ReconcileReport) -> None:
    """The run's figures as metrics, and an alert when something needs a person."""
    if report.status == "skipped":
        # Another run held the lease: said, so that runs piling up on each other show.
        metrics.add_metric(name="ReconcileSkipped", unit=MetricUnit.Count, value=1)
        return
    for name, value in (
        ("ReconcileEventsHealed", report.events_healed),
        ("ReconcileEventsRefused", report.events_refused),
        ("ReconcileDispatchesDrained", report.dispatches_drained),
        ("ReconcileDriftCorrected", report.drift_corrected),
        ("ReconcileItemsStuck", report.stuck),
        ("ReconcilePartial", int(report.status == "partial")),
        ("ReconcileSkipped", 0),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if report.oldest_pending_dispatch_seconds is not None:
        metrics.add_metric(
            name="OldestPendingDispatchSeconds",
            unit=MetricUnit.Seconds,
            value=report.oldest_pending_dispatch_seconds,
        )
    if report.stuck:
        alert(
            "the reconciler could not heal everything: see the runbook",
            stuck=report.stuck,
            oldest_pending_dispatch_seconds=report.oldest_pending_dispatch_seconds,
            events_failed=report.events_failed,
            notes=report.notes,
        )


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = bootstrap(*REQUIRED, store=True)
    start_invocation(context)
    dry_run = (event or {}).get("dry_run") is True
    report = run_reconcile(
        _ports(settings),
        policy=ReconcilePolicy(
            min_dispatch_age_seconds=settings.reconcile_min_age_seconds,
            min_event_age_seconds=settings.reconcile_min_age_seconds,
            lease_seconds=context.get_remaining_time_in_millis() // 1000 + LEASE_MARGIN_SECONDS,
        ),
        has_time=lambda: context.get_remaining_time_in_millis() > TIME_MARGIN_MS,
        dry_run=dry_run,
    )
    if not dry_run:
        emit(report)
    return {**report.figures(), "notes": report.notes}
