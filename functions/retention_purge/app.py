"""Daily retention purge (EventBridge schedule).

``{"dry_run": true}`` only counts what is due. A run that reaches the time margin stops between
batches and reports itself incomplete; the next run continues. A failure alerts and re-raises,
so the invocation errors and the function's alarm fires.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments.adapters.store import get_store
from payments.deadline import start_invocation
from payments.observability import alert, logger, metrics
from payments.retention import RetentionPolicy, purge_expired
from payments.runtime import bootstrap

# Stop starting batches when less than this is left: one batch stays well under the store's
# 10 s statement timeout, and the report still has to be logged.
TIME_MARGIN_MS = 20_000


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = bootstrap(store=True)
    start_invocation(context)
    dry_run = (event or {}).get("dry_run") is True
    policy = RetentionPolicy(retention_months=settings.retention_months)
    try:
        report = purge_expired(
            get_store(settings),
            policy,
            has_time=lambda: context.get_remaining_time_in_millis() > TIME_MARGIN_MS,
            dry_run=dry_run,
        )
    except Exception as exc:
        metrics.add_metric(name="RetentionPurgeFailed", unit=MetricUnit.Count, value=1)
        alert("retention purge failed", error=type(exc).__name__, dry_run=dry_run)
        raise
    summary = report.model_dump()
    if dry_run:
        metrics.add_metric(name="RetentionRowsDue", unit=MetricUnit.Count, value=report.total)
        logger.info("retention purge dry run", extra=summary)
    else:
        metrics.add_metric(name="RetentionRowsPurged", unit=MetricUnit.Count, value=report.total)
        metrics.add_metric(
            name="RetentionPurgeIncomplete", unit=MetricUnit.Count, value=int(not report.complete)
        )
        logger.info("retention purge finished", extra=summary)
    return summary
