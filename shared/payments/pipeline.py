"""What an operator sees of the pipeline (``GET /v1/admin/pipeline``): the dead-letter queue's
depth, the dispatches still pending and how old the oldest is, and the last reconcile run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from payments.adapters.store import Store
from payments.schema import Model


class DeadLetters(Model):
    depth: int | None = Field(
        description="Messages in the webhook dead-letter queue; null when it cannot be read"
    )


class PendingDispatches(Model):
    pending: int
    oldest_pending_age_seconds: int | None
    by_kind: dict[str, int]


class ReconcileRun(Model):
    started_at: datetime
    finished_at: datetime | None
    status: Literal["running", "ok", "partial", "failed"]
    events_healed: int
    dispatches_drained: int
    drift_corrected: int
    stuck: int


class PipelineStatus(Model):
    dead_letters: DeadLetters
    dispatches: PendingDispatches
    last_reconcile: ReconcileRun | None


def pipeline_status(store: Store, dead_letter_depth: Callable[[], int | None]) -> PipelineStatus:
    """The pipeline as it is now. The depth is asked of SQS; a failure there is a null depth,
    not an error: the rest of the page still helps."""
    status: dict[str, Any] = store.call("pipeline_status")
    return PipelineStatus(
        dead_letters=DeadLetters(depth=dead_letter_depth()),
        dispatches=PendingDispatches.model_validate(status["dispatches"]),
        last_reconcile=status.get("last_reconcile"),
    )
