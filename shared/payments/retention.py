"""The daily retention purge: delete payment data older than the retention window.

Each SQL call deletes at most one batch from one table in its own short transaction, so the
purge never holds a long lock and a run cut short by the Lambda deadline simply continues the
next day (the selection is by age, not by a saved position). What each table keeps, and for how
long, is in ``purge_expired_rows`` (supabase/migrations/20261126000800_member_data.sql).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import computed_field

from payments.adapters.store import Store
from payments.schema import Model

# Visited in this order: customers last but one, so the mappings whose purchases, subscriptions
# and logs went in this run can go too.
TARGETS = (
    "processed_events",
    "outbox",
    "refunds",
    "payment_logs",
    "purchases",
    "subscriptions",
    "customers",
    "erasures",
)
# Stripe retries a webhook for up to 3 days; a month of the dedupe ledger is ample.
LEDGER_DAYS = 30
BATCH_SIZE = 1000


@dataclass(frozen=True)
class RetentionPolicy:
    retention_months: int = 24
    ledger_days: int = LEDGER_DAYS
    batch_size: int = BATCH_SIZE


class PurgeReport(Model):
    dry_run: bool
    complete: bool
    batches: int
    rows: dict[str, int]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _call(store: Store, policy: RetentionPolicy, target: str, *, dry_run: bool) -> int:
    result: dict[str, Any] = store.call(
        "purge_expired_rows",
        p_target=target,
        p_retention_months=policy.retention_months,
        p_ledger_days=policy.ledger_days,
        p_batch_size=policy.batch_size,
        p_dry_run=dry_run,
    )
    return int(result["rows"])


def purge_expired(
    store: Store,
    policy: RetentionPolicy,
    *,
    has_time: Callable[[], bool],
    dry_run: bool = False,
) -> PurgeReport:
    """Delete expired rows batch by batch while ``has_time()``; or only count them (dry run).

    Returns what was deleted (or is due) per table and whether every table was finished;
    an unfinished run is not an error, the next run picks up where this one stopped.
    """
    rows = dict.fromkeys(TARGETS, 0)
    batches = 0
    for target in TARGETS:
        while True:
            if not has_time():
                return PurgeReport(dry_run=dry_run, complete=False, batches=batches, rows=rows)
            deleted = _call(store, policy, target, dry_run=dry_run)
            batches += 1
            rows[target] += deleted
            # A dry run counts a table in one call; a short batch means the table is done.
            if dry_run or deleted < policy.batch_size:
                break
    return PurgeReport(dry_run=dry_run, complete=True, batches=batches, rows=rows)
