"""The reconciler under an outage, poison rows, drift and events of another API version: the
real handlers and worker code, SQL on Postgres, a Stripe emulator of its own, the Make.com
receiver, and local stand-ins where a far side must fail or be watched."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import psycopg
import pytest

from functions.reconcile import app as reconcile_app
from payments.adapters.make import MakeRejected, MakeUnavailable
from payments.reconcile import (
    DRIFT_STUCK_AFTER,
    GIVE_UP_AFTER,
    ReconcilePorts,
    ReconcileReport,
    run_reconcile,
)
from payments.settings import get_settings
from tests.fakes.lambda_context import FakeLambdaContext
from tests.reconcile.test_reconcile import NOW, add_projects, buy, status_of
from tests.stack import *  # noqa: F403
from tests.stack import STRIPE_KEY, WEBHOOK_SECRET, Stack, api
from tests.worker_feed import WorkerFeed
from tools.local.make_receiver import MakeReceiverServer
from tools.seed_stripe import seed_catalog
from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    """An emulator of this test's own: the reconciler lists every event since its watermark."""
    handle = start_emulator(
        port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
    )
    seed_catalog(STRIPE_KEY, handle.base_url, quiet=True)
    yield handle
    handle.stop()


@pytest.fixture
def ports(stack: Stack) -> Iterator[ReconcilePorts]:
    reconcile_app._ports.cache_clear()
    yield reconcile_app._ports(get_settings())
    reconcile_app._ports.cache_clear()


def reconcile(ports: ReconcilePorts, **kw: Any) -> ReconcileReport:
    kw.setdefault("policy", NOW)
    return run_reconcile(ports, **kw)


def budget(seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


def sql(db: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db, autocommit=True) as conn:
        cur = conn.execute(query, args or None)
        return cur.fetchall() if cur.description else []


def watermark_in_the_future(db: str) -> None:
    """Nothing for the catch-up to list: only the drift check can see what changed."""
    sql(
        db,
        "insert into reconcile_state (key, value) values ('events_watermark',"
        " jsonb_build_object('created', now() + interval '1 hour'))",
    )


@dataclass
class MakeStandIn:
    """Make.com as the reconciler's worker sees it: down (every post fails at once, without
    the adapter's backoff) or up; each post noted with what the outbox held at that moment."""

    db: str
    down: bool = True
    posts: list[Mapping[str, Any]] = field(default_factory=list)
    leased_at_each_post: list[int] = field(default_factory=list)

    def send(self, payload: Mapping[str, Any]) -> None:
        self.posts.append(payload)
        [(leased,)] = sql(
            self.db,
            "select count(*) from outbox where status = 'pending' and locked_until > now()",
        )
        self.leased_at_each_post.append(int(leased))
        if self.down:
            raise MakeUnavailable()


def with_make(ports: ReconcilePorts, make: MakeStandIn) -> ReconcilePorts:
    return replace(ports, worker=replace(ports.worker, make=make))


def pending_add_projects(db: str, stack: Stack, make_receiver: MakeReceiverServer, n: int) -> str:
    """``n`` pending add_project dispatches: one from a real purchase processed while Make.com
    was down, the others copies of it (a long outage's backlog)."""
    feed = WorkerFeed(stack.emulator.base_url, STRIPE_KEY)
    make_receiver.inject_fault(503, 1000)
    session = buy(stack, "mem_backlog")
    feed.deliver(feed.new_events())
    make_receiver.inject_fault(503, 0)
    sql(
        db,
        "insert into outbox (kind, dedupe_key, event_id, payload, created_at)"
        " select kind, dedupe_key || ':' || n, event_id, payload, created_at + n * interval '1 ms'"
        " from outbox, generate_series(1, %s) as n where status = 'pending'",
        n - 1,
    )
    return session


# --- 1. the outbox drain ------------------------------------------------------------------


def test_a_make_outage_stops_the_drain_and_lets_the_catch_up_run(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, ports: ReconcilePorts
) -> None:
    # Given a backlog of 60 dispatches, Make.com still down, and a purchase whose events
    # Stripe never delivered
    pending_add_projects(db, stack, make_receiver, 60)
    missed = buy(stack, "mem_missed_in_outage")
    make = MakeStandIn(db)

    # When the reconciler runs with a budget the drain alone could use up
    report = reconcile(with_make(ports, make), has_time=budget(15))

    # Then it gave up on Make.com after a few failures in a row, and the other steps ran
    backlog_posts = [p for p in make.posts if p.get("checkout_session_id") != missed]
    assert len(backlog_posts) == GIVE_UP_AFTER
    assert report.status == "ok"
    assert status_of(db, missed) == "paid"
    assert report.events_healed >= 2
    [(tried,)] = sql(
        db,
        "select count(*) from outbox where attempts > 0 and event_id ="
        " (select event_id from outbox order by id limit 1)",
    )
    assert tried == GIVE_UP_AFTER


def test_refusals_tied_to_their_rows_do_not_stop_the_rows_behind_them(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, ports: ReconcilePorts
) -> None:
    # Given six pending dispatches whose first four Make.com refuses (a 4xx: those documents,
    # not an outage), and that accepts the rest
    pending_add_projects(db, stack, make_receiver, 6)

    @dataclass
    class Refusing(MakeStandIn):
        refusals: int = 4

        def send(self, payload: Mapping[str, Any]) -> None:
            self.posts.append(payload)
            if len(self.posts) <= self.refusals:
                raise MakeRejected()

    make = Refusing(db, down=False)

    # When the reconciler runs
    report = reconcile(with_make(ports, make), has_time=budget(15))

    # Then every row was tried, more refusals than GIVE_UP_AFTER in a row notwithstanding, and
    # the two behind them were sent
    assert len(make.posts) == 6 > GIVE_UP_AFTER
    assert (report.dispatches_failed, report.dispatches_drained) == (4, 2)
    assert sql(db, "select count(*) from outbox where status = 'sent'") == [(2,)]


def test_each_dispatch_is_leased_only_while_it_is_sent(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, ports: ReconcilePorts
) -> None:
    # Given a backlog of 5 dispatches and Make.com back
    pending_add_projects(db, stack, make_receiver, 5)
    make = MakeStandIn(db, down=False)

    # When the reconciler drains them
    report = reconcile(with_make(ports, make))

    # Then each was leased on its own, just before it was sent, and all were sent once
    assert report.dispatches_drained == 5
    assert make.leased_at_each_post == [1] * 5
    assert len({p["idempotency_key"] for p in make.posts}) == 5


def test_a_poison_dispatch_is_stuck_and_the_rows_behind_it_still_go_out(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, ports: ReconcilePorts
) -> None:
    # Given a dispatch whose payload cannot be read, oldest of all, and a good one behind it
    good = pending_add_projects(db, stack, make_receiver, 1)
    sql(
        db,
        "insert into outbox (kind, dedupe_key, event_id, payload, created_at) values"
        " ('add_project', 'poison', 'evt_poison', '{\"product\": \"business_plan_builder\"}',"
        " now() - interval '10 minutes')",
    )

    # When the reconciler runs, twice
    first = reconcile(ports)
    second = reconcile(ports)

    # Then the run does not fail on it: it is released as unexpected and counted stuck, and
    # the good one went out
    assert (first.status, second.status) == ("ok", "ok")
    assert first.dispatches_drained == 1
    assert (first.stuck, second.stuck) == (1, 1)
    assert add_projects(make_receiver, good) == 1
    assert sql(db, "select attempts, last_error from outbox where dedupe_key = 'poison'") == [
        (2, "unexpected")
    ]


# --- the run's lease ----------------------------------------------------------------------


class Killed(BaseException):
    """Lambda ending the invocation at its timeout: nothing after it runs."""


def lease(db: str) -> dict[str, Any]:
    [(value,)] = sql(db, "select value from reconcile_state where key = 'lease'")
    return dict(value)


def test_a_run_killed_at_its_timeout_frees_the_lease_before_the_next_schedule(
    stack: Stack, db: str, ports: ReconcilePorts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run killed in the middle of its catch-up (the function's 300 s timeout)
    import payments.reconcile as reconcile_module

    def killed(*_a: Any, **_k: Any) -> None:
        raise Killed

    monkeypatch.setattr(reconcile_module, "_catch_up", killed)
    with pytest.raises(Killed):
        reconcile_app.lambda_handler({}, FakeLambdaContext("ReconcileFunction", 300))
    monkeypatch.undo()

    # Then its lease ends with its timeout and a margin, well before the next schedule (15 min)
    [(seconds,)] = sql(
        db,
        "select extract(epoch from (value ->> 'until')::timestamptz - now())"
        " from reconcile_state where key = 'lease'",
    )
    assert 300 <= float(seconds) <= 420
    killed_run = int(lease(db)["run"])

    # When the next run comes after it
    sql(
        db,
        'update reconcile_state set value = value || \'{"until": "2000-01-01"}\''
        " where key = 'lease'",
    )
    report = reconcile(ports)

    # Then it runs, and records the killed run as failed instead of leaving it running
    assert report.status == "ok"
    assert report.abandoned_run == killed_run
    [(status, error)] = sql(
        db, "select status, error from reconcile_runs where id = %s", killed_run
    )
    assert status == "failed"
    assert "without recording its end" in error


def test_a_skipped_run_says_so_in_its_metrics(
    stack: Stack, db: str, ports: ReconcilePorts, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given another run holding the lease
    sql(db, "select begin_reconcile_run(600, false)")
    capsys.readouterr()

    # When the scheduled function runs
    result = reconcile_app.lambda_handler({}, FakeLambdaContext("ReconcileFunction", 300))

    # Then it did nothing, and its metrics say it was skipped
    assert result["status"] == "skipped"
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert any(line.get("ReconcileSkipped") in (1, [1]) for line in emitted)


# --- 2. drift -----------------------------------------------------------------------------


def subscribe(stack: Stack, member: str) -> str:
    feed = WorkerFeed(stack.emulator.base_url, STRIPE_KEY)
    answer = api(
        "subscriptions",
        "POST",
        "/v1/subscriptions",
        body={"product": "growth_monthly"},
        token=stack.token(member),
    )
    assert answer.status == 201, answer.body
    session = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{answer.body['id']}/pay", json={"outcome": "success"}
    )
    feed.deliver(feed.new_events())
    return str(session["subscription"])


def stripe_post(stack: Stack, path: str, data: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.emulator.base_url}{path}",
        data=data,
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def test_two_different_corrections_of_one_subscription_are_both_applied(
    stack: Stack, db: str, ports: ReconcilePorts
) -> None:
    # Given a subscription cancelled at period end at Stripe, whose event we lost
    subscription = subscribe(stack, "mem_drift_twice")
    watermark_in_the_future(db)
    stripe_post(stack, f"/v1/subscriptions/{subscription}", {"cancel_at_period_end": "true"})
    due = "update subscriptions set current_period_end = now() - interval '1 minute' where id = %s"
    cancelling = "select cancel_at_period_end from subscriptions where id = %s"
    sql(db, due, subscription)

    # When the reconciler re-reads it, then it applies the change
    assert reconcile(ports).drift_corrected == 1
    assert sql(db, cancelling, subscription) == [(True,)]

    # Given the member then kept it (same status, another state), and that event lost too
    stripe_post(stack, f"/v1/subscriptions/{subscription}", {"cancel_at_period_end": "false"})
    sql(db, due, subscription)

    # When the reconciler re-reads it, then this second correction is applied as well
    assert reconcile(ports).drift_corrected == 1
    assert sql(db, cancelling, subscription) == [(False,)]


def test_a_bank_debit_that_failed_without_its_event_is_recorded_as_failed(
    stack: Stack, db: str, ports: ReconcilePorts
) -> None:
    # Given a bank debit settling for over a day, which failed at Stripe without its event
    feed = WorkerFeed(stack.emulator.base_url, STRIPE_KEY)
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": "website_audit_feedback"},
        token=stack.token("mem_debit"),
    )
    session = str(answer.body["id"])
    stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{session}/pay", json={"outcome": "delayed"}
    )
    feed.deliver(feed.new_events())
    [(settling,)] = sql(
        db, "select payment_status from purchases where checkout_session_id = %s", session
    )
    assert settling == "processing"
    watermark_in_the_future(db)
    stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{session}/settle", json={"succeeded": False}
    )
    sql(
        db,
        "update purchases set updated_at = now() - interval '2 days'"
        " where checkout_session_id = %s",
        session,
    )

    # When the reconciler re-reads it
    report = reconcile(ports)

    # Then the purchase is the failed payment it is, and no longer a candidate
    assert report.drift_corrected == 1
    assert sql(
        db, "select payment_status from purchases where checkout_session_id = %s", session
    ) == [("failed",)]
    assert reconcile(ports).drift_checked == 0


class WatchedStripe:
    """The real Stripe adapter, with every object the reconciler re-reads noted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.retrieved: list[tuple[str, str]] = []

    @property
    def api_version(self) -> str:
        return str(self.inner.api_version)

    def list_events(self, **kw: Any) -> tuple[list[dict[str, Any]], bool]:
        page, more = self.inner.list_events(**kw)
        return list(page), bool(more)

    def retrieve_object(self, kind: str, object_id: str) -> dict[str, Any]:
        self.retrieved.append((kind, object_id))
        return dict(self.inner.retrieve_object(kind, object_id))


def test_objects_that_stay_candidates_do_not_crowd_out_the_others(
    stack: Stack, db: str, ports: ReconcilePorts
) -> None:
    # Given three checkouts past their expiry in our table that Stripe still holds open
    sessions = []
    for member in ("mem_crowd_a", "mem_crowd_b", "mem_crowd_c"):
        answer = api(
            "create_checkout",
            "POST",
            "/v1/checkout/sessions",
            body={"product": "website_audit_feedback"},
            token=stack.token(member),
        )
        sessions.append(str(answer.body["id"]))
    sql(db, "update purchases set expires_at = now() - interval '1 minute'")
    watermark_in_the_future(db)
    stripe = WatchedStripe(ports.stripe())
    watched = replace(ports, stripe=lambda: stripe)

    # When two runs may each re-read two objects
    policy = replace(NOW, candidate_batch=2)
    reconcile(watched, policy=policy)
    reconcile(watched, policy=policy)

    # Then every one of the three was re-read
    assert {object_id for _, object_id in stripe.retrieved} == set(sessions)


def test_a_correction_that_never_applies_is_stuck_after_a_few_runs(
    stack: Stack, db: str, ports: ReconcilePorts
) -> None:
    # Given a subscription whose correction our SQL keeps finding stale (a row stamped ahead)
    subscription = subscribe(stack, "mem_never_converges")
    watermark_in_the_future(db)
    stripe_post(stack, f"/v1/subscriptions/{subscription}", {"cancel_at_period_end": "true"})
    sql(
        db,
        "update subscriptions set current_period_end = now() - interval '1 minute',"
        " state_as_of = now() + interval '1 day' where id = %s",
        subscription,
    )

    # When the reconciler re-reads it run after run
    runs = [reconcile(ports) for _ in range(DRIFT_STUCK_AFTER)]

    # Then nothing applies, and the last run counts it stuck
    assert [r.drift_corrected for r in runs] == [0] * DRIFT_STUCK_AFTER
    assert [r.stuck for r in runs[:-1]] == [0] * (DRIFT_STUCK_AFTER - 1)
    assert runs[-1].stuck == 1


# --- 3. events of another API version -----------------------------------------------------


def test_a_missed_event_listed_at_another_api_version_is_applied_at_ours(
    stack: Stack, db: str, make_receiver: MakeReceiverServer, ports: ReconcilePorts
) -> None:
    # Given a paid purchase whose events never reached us, and that Stripe lists at the
    # account's older API version, in a shape the worker cannot read
    session = buy(stack, "mem_old_version")
    store = stack.emulator.emulator.store
    for event in store.all("event"):
        obj = event["data"]["object"]
        if session in (obj.get("id"), obj.get("metadata", {}).get("checkout_session_id")) or (
            event["type"].startswith("payment_intent.")
        ):
            event["api_version"] = "2020-08-27"
            event["data"] = {"object": {"object": obj["object"], "id": obj["id"]}}

    # When the reconciler runs
    report = reconcile(ports)

    # Then each event's object was re-read at our version and applied under the event's own id
    assert report.events_reread >= 2
    assert status_of(db, session) == "paid"
    assert add_projects(make_receiver, session) == 1
    [(outcome,)] = sql(
        db,
        "select outcome from processed_events where event_type = 'checkout.session.completed'"
        " and event_id not like 'evt_reconcile_%'",
    )
    assert outcome == "applied"
    # Logged with what the whole session says (the old shape carried no amount)
    assert sql(
        db, "select amount from payment_logs where event_type = 'checkout.session.completed'"
    ) == [(9900,)]


def test_a_listed_event_whose_object_stripe_no_longer_knows_is_stuck_and_passed(
    stack: Stack, db: str, ports: ReconcilePorts
) -> None:
    # Given a missed event at another API version whose object Stripe no longer knows
    session = buy(stack, "mem_gone_object")
    store = stack.emulator.emulator.store
    [gone] = [
        e
        for e in store.all("event")
        if e["type"] == "checkout.session.completed" and e["data"]["object"]["id"] == session
    ]
    gone["api_version"] = "2020-08-27"
    gone["data"] = {"object": {"object": "checkout.session", "id": "cs_test_deleted_since"}}

    # When the reconciler runs
    report = reconcile(ports)

    # Then it counts it stuck (an alarm) and still moves the watermark past it: holding the
    # watermark would re-list a growing window for as long as Stripe keeps the event
    assert report.stuck >= 1
    assert report.watermark is not None
    assert any("unknown to Stripe" in note for note in report.notes)


# --- 4. refused events --------------------------------------------------------------------


def test_a_missed_event_of_the_other_mode_is_counted_refused_not_healed(
    stack: Stack, db: str, ports: ReconcilePorts
) -> None:
    # Given a missed event sent in live mode to this test-mode deployment
    session = buy(stack, "mem_other_mode")
    for event in stack.emulator.emulator.store.all("event"):
        if event["type"] == "checkout.session.completed":
            event["livemode"] = True

    # When the reconciler runs
    report = reconcile(ports)

    # Then it is recorded once as refused, counted as such, and does not hold the watermark
    assert report.events_refused == 1
    assert report.watermark is not None
    [(outcome,)] = sql(
        db,
        "select outcome from processed_events where event_type = 'checkout.session.completed'",
    )
    assert outcome == "refused"
    again = reconcile(ports)
    assert (again.events_refused, again.events_healed) == (0, 0)
    assert session
