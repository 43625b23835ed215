"""Run the reconciler once, here: against ``make dev`` (``make reconcile``) or a deployment.

    python -m tools.reconcile [--dry-run] [--now] [--budget SECONDS]

It reads the same variables as ``ReconcileFunction`` (``STRIPE_SECRET_KEY``, ``DATABASE_URL``
or ``SUPABASE_URL`` + ``SUPABASE_SERVICE_ROLE_KEY``, ``MAKE_WEBHOOK_URL``, ``MAKE_API_KEY``;
``make reconcile`` takes them from ``.local/env``) and runs the same job
(``payments.reconcile``): drain the outbox, catch up with Stripe's events, check drift, report.
``--dry-run`` only says what it would do. ``--now`` skips the minimum ages (a dispatch or an
event is handled however young it is: what ``make dev``'s own schedule does). The run prints
its figures; the exit code is 0 when nothing is stuck, 1 when something needs a person.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from payments import errors
from payments.observability import logger
from payments.reconcile import LEASE_MARGIN_SECONDS, ReconcilePolicy, run_reconcile
from payments.settings import get_settings

INSTANT = ReconcilePolicy(min_dispatch_age_seconds=0, min_event_age_seconds=0, refund_age_seconds=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.reconcile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done")
    parser.add_argument("--now", action="store_true", help="no minimum ages (local use)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds (default 240)")
    args = parser.parse_args(argv)

    from functions.reconcile.app import REQUIRED, _ports

    try:
        settings = get_settings().require(*REQUIRED)
        settings.require_store()
        ports = _ports(settings)
    except errors.ConfigurationError as exc:
        print(f"reconcile: {exc.message}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.budget
    # Past the budget by at most the calls in flight when it ran out.
    lease = int(args.budget) + 2 * LEASE_MARGIN_SECONDS
    try:
        report = run_reconcile(
            ports,
            policy=replace(INSTANT if args.now else ReconcilePolicy(), lease_seconds=lease),
            has_time=lambda: time.monotonic() < deadline,
            dry_run=args.dry_run,
        )
    except errors.PaymentsError as exc:
        print(f"reconcile: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    figures = {**report.figures(), "notes": report.notes}
    print(json.dumps(figures, indent=2, default=str))
    return 1 if report.stuck else 0


def _log_to_stderr() -> None:
    """The figures on stdout are this command's answer (``| jq``); the service's log lines go
    to stderr."""
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)


if __name__ == "__main__":
    _log_to_stderr()
    sys.exit(main())
