"""The reconciler end to end: the real handlers and worker code, SQL on Postgres, a Stripe
emulator of its own, the Make.com receiver. Time is compressed: the policy's minimum ages are 0."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from functions.reconcile import app as reconcile_app
from payments.reconcile import ReconcilePolicy, ReconcileReport, run_reconcile
from payments.settings import get_settings
from tests.fakes.lambda_context import FakeLambdaContext
from tests.stack import *  # noqa: F403
from tests.stack import ADMIN_ID, STRIPE_KEY, WEBHOOK_SECRET, Stack, api
from tests.worker_feed import WorkerFeed
from tools.local.make_receiver import MakeReceiverServer
from tools.seed_stripe import seed_catalog
from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    """An emulator of this test's own: the reconciler lists every event since its watermark,
    and the session-wide emulator holds every other test's events too."""
    handle = start_emulator(
        port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
    )
    seed_catalog(STRIPE_KEY, handle.base_url, quiet=True)
    yield handle
    handle.stop()


NOW = ReconcilePolicy(min_dispatch_age_seconds=0, min_event_age_seconds=0, refund_age_seconds=0)


@pytest.fixture
def reconcile(stack: Stack) -> Any:
    reconcile_app._ports.cache_clear()

    def run(**kw: Any) -> ReconcileReport:
        return run_reconcile(reconcile_app._ports(get_settings()), policy=NOW, **kw)

    yield run
    reconcile_app._ports.cache_clear()


def buy(stack: Stack, member: str, product: str = "business_plan_builder") -> str:
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": product},
        token=stack.token(member),
    )
    assert answer.status == 201, answer.body
    stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{answer.body['id']}/pay", json={"outcome": "success"}
    )
    return str(answer.body["id"])


def status_of(db: str, session: str) -> str:
    with psycopg.connect(db) as conn:
        [(status,)] = conn.execute(
            "select status from purchases where checkout_session_id = %s", (session,)
        ).fetchall()
    return str(status)


def add_projects(make: MakeReceiverServer, session: str) -> int:
    return sum(1 for p in make.received if p.get("checkout_session_id") == session)


def test_events_stripe_never_delivered_are_applied_once_and_the_watermark_moves(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, reconcile: Any
) -> None:
    # Given a paid purchase whose events never reached us (the endpoint was down for days)
    session = buy(stack, "mem_missed")
    assert status_of(db, session) == "open"

    # When the reconciler runs
    report = reconcile()

    # Then the purchase is paid, the project started once, and the watermark moved
    assert report.status == "ok"
    assert report.events_healed >= 2  # payment_intent.succeeded, checkout.session.completed
    assert status_of(db, session) == "paid"
    assert add_projects(make_receiver, session) == 1
    assert report.watermark is not None
    # And the next run finds nothing left to heal
    again = reconcile()
    assert (again.events_healed, again.dispatches_drained) == (0, 0)
    assert add_projects(make_receiver, session) == 1


def test_a_make_outage_heals_itself_once_make_is_back(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, reconcile: Any
) -> None:
    # Given a purchase processed while Make.com was down for longer than the queue retries
    feed = WorkerFeed(stack.emulator.base_url, STRIPE_KEY)
    make_receiver.inject_fault(503, 1000)
    session = buy(stack, "mem_outage")
    events = feed.new_events()
    feed.deliver(events)
    assert status_of(db, session) == "paid"
    assert add_projects(make_receiver, session) == 0

    # When Make.com is back and the reconciler runs (no redrive)
    make_receiver.inject_fault(503, 0)
    report = reconcile()

    # Then the dispatch went out once, and nothing is pending
    assert report.dispatches_drained == 1
    assert add_projects(make_receiver, session) == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from outbox where status = 'pending'").fetchone() == (
            0,
        )


def test_stripe_failing_ends_the_run_early_and_the_next_one_continues(
    stack: Stack, db: str, reconcile: Any
) -> None:
    # Given missed events, and Stripe failing every listing for a while
    session = buy(stack, "mem_stripe_down")
    stack.fault("GET", "/v1/events", 500, times=100, should_retry=True)

    # When the reconciler runs, then it ends partial, keeps its watermark, and changes nothing
    first = reconcile()
    assert first.status == "partial"
    assert first.watermark is None
    assert status_of(db, session) == "open"

    # When Stripe is back, the next run heals it
    httpx.delete(f"{stack.emulator.base_url}/_emulator/faults")
    second = reconcile()
    assert second.status == "ok"
    assert status_of(db, session) == "paid"


def test_a_checkout_left_open_past_its_expiry_is_corrected_from_stripe(
    stack: Stack, db: str, reconcile: Any
) -> None:
    # Given a session that expired at Stripe, whose events we lost, and past the watermark
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": "website_audit_feedback"},
        token=stack.token("mem_drift"),
    )
    session = answer.body["id"]
    stack.emulator_call("POST", f"/_emulator/checkout/sessions/{session}/expire")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "update purchases set expires_at = now() - interval '1 minute'"
            " where checkout_session_id = %s",
            (session,),
        )
        conn.execute(
            "insert into reconcile_state (key, value) values ('events_watermark',"
            " jsonb_build_object('created', now() + interval '1 hour'))"
        )

    # When the reconciler runs, then the drift check re-reads it and applies its state
    report = reconcile()
    assert report.drift_corrected == 1
    assert status_of(db, session) == "expired"
    # And a second run corrects nothing twice
    assert reconcile().drift_corrected == 0


def test_two_runs_at_once_do_the_work_once(stack: Stack, db: str, reconcile: Any) -> None:
    buy(stack, "mem_overlap")
    reports: list[ReconcileReport] = []
    threads = [threading.Thread(target=lambda: reports.append(reconcile())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in reports)
    healed = sum(r.events_healed for r in reports)
    # One run did it; the other either found the lease held or nothing left to do
    assert statuses in (["ok", "skipped"], ["ok", "ok"])
    assert healed >= 2
    with psycopg.connect(db) as conn:
        [(applied,)] = conn.execute(
            "select count(*) from processed_events where event_type = 'checkout.session.completed'"
        ).fetchall()
    assert applied == 1


def test_a_dispatch_stuck_for_an_hour_is_reported_and_alerted(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, reconcile: Any
) -> None:
    # Given a dispatch Make.com has refused for over an hour
    feed = WorkerFeed(stack.emulator.base_url, STRIPE_KEY)
    make_receiver.inject_fault(503, 1000)
    buy(stack, "mem_stuck")
    feed.deliver(feed.new_events())
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("update outbox set created_at = now() - interval '2 hours'")

    # When the reconciler runs through the function (metrics and the alert)
    result = reconcile_app.lambda_handler({}, FakeLambdaContext("ReconcileFunction", 300))

    # Then it says what is stuck, and the pipeline route shows it
    assert result["stuck"] == 1
    assert result["oldest_pending_dispatch_seconds"] >= 7200
    pipeline = api("member_data", "GET", "/v1/admin/pipeline", token=stack.token(ADMIN_ID))
    assert pipeline.status == 200
    assert pipeline.body["dispatches"]["pending"] == 1
    assert pipeline.body["dispatches"]["by_kind"] == {"add_project": 1}
    assert pipeline.body["last_reconcile"]["stuck"] == 1
    make_receiver.inject_fault(503, 0)


def test_a_dry_run_changes_nothing(stack: Stack, db: str, reconcile: Any) -> None:
    session = buy(stack, "mem_dry")
    report = reconcile(dry_run=True)
    assert report.dry_run
    assert any("never applied" in note for note in report.notes)
    assert status_of(db, session) == "open"


def test_the_pipeline_is_for_admins_only(stack: Stack) -> None:
    answer = api("member_data", "GET", "/v1/admin/pipeline", token=stack.token("mem_nosy"))
    assert answer.status == 403
    assert json.dumps(answer.body).count("dispatches") == 0


def test_the_function_leaves_young_work_to_the_worker(
    stack: Stack, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a payment seconds old whose events the worker has not applied yet
    session = buy(stack, "mem_young")
    context = FakeLambdaContext("ReconcileFunction", 300)

    # When the scheduled function runs with the deployed minimum age (5 minutes)
    reconcile_app._ports.cache_clear()
    monkeypatch.delenv("RECONCILE_MIN_AGE_SECONDS", raising=False)
    get_settings.cache_clear()
    young = reconcile_app.lambda_handler({}, context)

    # Then it leaves them alone; with RECONCILE_MIN_AGE_SECONDS=0 it applies them
    assert young["events_healed"] == 0
    assert status_of(db, session) == "open"
    monkeypatch.setenv("RECONCILE_MIN_AGE_SECONDS", "0")
    get_settings.cache_clear()
    now = reconcile_app.lambda_handler({}, context)
    assert now["events_healed"] >= 2
    assert status_of(db, session) == "paid"
    get_settings.cache_clear()
    reconcile_app._ports.cache_clear()
