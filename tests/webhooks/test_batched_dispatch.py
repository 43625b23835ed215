"""The worker's outbox, a batch at a time: every due row of a batch is leased in one call, the
Make.com documents are posted concurrently, the sent ones are marked in one call, and a failure
fails only the message of its event."""

from __future__ import annotations

import contextvars
import dataclasses
import json
import threading
from collections.abc import Mapping
from typing import Any

import psycopg
import pytest

from functions.webhook_worker import app as worker_app
from payments.adapters.make import MakeUnavailable
from payments.webhook_processing import WorkerPorts
from tests.webhooks import factories as f
from tests.webhooks.conftest import context, rows, sqs_event, sqs_record
from tools.local.make_receiver import MakeReceiverServer

pytestmark = pytest.mark.integration


class FlakyMake:
    """The real Make.com adapter, except that the documents of ``failing`` sessions fail
    (once each) as an outage would; ``barrier`` makes every post wait for the others."""

    def __init__(
        self, real: Any, failing: set[str] = frozenset(), barrier: threading.Barrier | None = None
    ) -> None:
        self._real = real
        self._failing = set(failing)
        self._barrier = barrier
        self._lock = threading.Lock()
        self.threads: set[str] = set()

    def send(self, payload: Mapping[str, Any]) -> None:
        with self._lock:
            self.threads.add(threading.current_thread().name)
            fail = payload.get("checkout_session_id") in self._failing
            self._failing.discard(str(payload.get("checkout_session_id")))
        if self._barrier is not None:
            # Raises BrokenBarrierError unless the others are in flight at the same time.
            self._barrier.wait()
        if fail:
            raise MakeUnavailable()
        self._real.send(payload)


def run(ports: WorkerPorts, batch: dict[str, Any]) -> list[str]:
    response = worker_app.handle_batch(batch, context(), ports)
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def sessions_received(receiver: MakeReceiverServer) -> list[str]:
    return sorted(doc["checkout_session_id"] for doc in receiver.received)


def test_one_failing_dispatch_fails_only_its_message_and_is_sent_once_on_the_retry(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given three members' paid checkouts in one batch, and Make.com failing the second's
    sessions = [f.checkout_session(member_id=f.new_id("mem_")) for _ in range(3)]
    events = [f.event("checkout.session.completed", s) for s in sessions]
    flaky = dataclasses.replace(ports, make=FlakyMake(ports.make, {sessions[1]["id"]}))
    batch = sqs_event(*events)

    # When the batch is processed
    failed = run(flaky, batch)

    # Then only the second message fails; the others were sent, and the failure was released
    # at once with its error code
    assert failed == [batch["Records"][1]["messageId"]]
    assert sessions_received(make_receiver) == sorted([sessions[0]["id"], sessions[2]["id"]])
    outbox = {
        event_id: rest
        for event_id, *rest in rows(
            db, "select event_id, status, attempts, last_error, locked_until from outbox"
        )
    }
    assert outbox[events[0]["id"]][:2] == ["sent", 1]
    assert outbox[events[2]["id"]][:2] == ["sent", 1]
    assert outbox[events[1]["id"]] == ["pending", 1, "make_unavailable", None]

    # When SQS redelivers the whole batch (the failed message, and the others once more)
    assert run(flaky, sqs_event(*events)) == []

    # Then the failed document went out on the retry, and none was sent twice
    assert sessions_received(make_receiver) == sorted(s["id"] for s in sessions)
    attempts = dict(rows(db, "select event_id, attempts from outbox where status = 'sent'"))
    assert attempts == {events[0]["id"]: 1, events[1]["id"]: 2, events[2]["id"]: 1}


def test_the_documents_of_a_batch_are_posted_concurrently(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given three members' paid checkouts in one batch, and posts that each wait for two others
    events = [
        f.event("checkout.session.completed", f.checkout_session(member_id=f.new_id("mem_")))
        for _ in range(3)
    ]
    flaky = FlakyMake(ports.make, barrier=threading.Barrier(3, timeout=10))

    # When the batch is processed
    failed = run(dataclasses.replace(ports, make=flaky), sqs_event(*events))

    # Then the three posts were in flight together (one after another, the barrier breaks),
    # from the dispatch threads, and each document landed once
    assert failed == []
    assert len(make_receiver.received) == 3
    assert len(flaky.threads) == 3
    assert all(name.startswith("dispatch") for name in flaky.threads)


def test_a_single_due_row_is_performed_in_the_calling_thread(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given one paid checkout whose document failed on its first delivery
    session = f.checkout_session()
    event = f.event("checkout.session.completed", session)
    flaky = FlakyMake(ports.make, {session["id"]})
    assert len(run(dataclasses.replace(ports, make=flaky), sqs_event(event))) == 1

    # When the same delivery comes back
    assert run(dataclasses.replace(ports, make=flaky), sqs_event(event)) == []

    # Then both attempts ran in this thread (no pool for a single row), and it landed once
    assert flaky.threads == {threading.current_thread().name}
    assert sessions_received(make_receiver) == [session["id"]]


def test_a_sent_dispatch_the_database_cannot_record_fails_its_message_and_stays_leased(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given two members' paid checkouts, and a database refusing to mark the second one sent
    events = [
        f.event("checkout.session.completed", f.checkout_session(member_id=f.new_id("mem_")))
        for _ in range(2)
    ]
    unlucky = events[1]["id"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "create function pg_temp_refuse_sent() returns trigger language plpgsql as $$"
            f" begin if new.event_id = '{unlucky}' and new.status = 'sent' then"
            " raise exception 'refused'; end if; return new; end $$"
        )
        conn.execute(
            "create trigger refuse_sent before update on outbox"
            " for each row execute function pg_temp_refuse_sent()"
        )
    batch = sqs_event(*events)
    try:
        # When the batch is processed
        failed = run(ports, batch)
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("drop trigger refuse_sent on outbox")
            conn.execute("drop function pg_temp_refuse_sent()")

    # Then both documents went out, the first is recorded sent, and the second's message fails
    # while its row stays pending under its lease (resent after it, with the same key)
    assert failed == [batch["Records"][1]["messageId"]]
    assert len(make_receiver.received) == 2
    state = {
        event_id: (status, leased)
        for event_id, status, leased in rows(
            db, "select event_id, status, coalesce(locked_until > now(), false) from outbox"
        )
    }
    assert state == {events[0]["id"]: ("sent", False), unlucky: ("pending", True)}


@pytest.mark.parametrize(("receives", "comes_back"), [(1, True), (2, True), (3, False), (5, False)])
def test_a_dispatch_still_failing_after_a_few_receives_is_left_to_the_reconciler(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer, receives: int, comes_back: bool
) -> None:
    # Given a paid checkout whose Make.com document fails, delivered for the n-th time
    session = f.checkout_session(member_id=f.new_id("mem_"))
    event = f.event("checkout.session.completed", session)
    flaky = dataclasses.replace(ports, make=FlakyMake(ports.make, {session["id"]}))
    record = sqs_record(json.dumps(event), event_id=event["id"], receive_count=receives)

    # When the worker processes it
    failed = run(flaky, {"Records": [record]})

    # Then it comes back on its first receives only; either way the event is applied and its
    # dispatch stays pending in the outbox, released for the reconciler to perform
    assert failed == ([record["messageId"]] if comes_back else [])
    assert rows(db, "select outcome from processed_events") == [("applied",)]
    assert rows(db, "select status, last_error, locked_until from outbox") == [
        ("pending", "make_unavailable", None)
    ]
    assert make_receiver.received == []


def test_a_post_is_not_started_with_too_little_time_left(make_receiver: MakeReceiverServer) -> None:
    # Given an invocation with about three seconds left, less than one Make.com attempt may take
    from payments.adapters.make import ATTEMPT_SECONDS, MakeWebhook
    from payments.deadline import start_invocation
    from tests.fakes.lambda_context import FakeLambdaContext

    make = MakeWebhook(make_receiver.url + "/hook", make_receiver.api_key, max_retries=0)
    context = contextvars.copy_context()
    context.run(start_invocation, FakeLambdaContext("worker", timeout_seconds=3.0))

    # When a document is sent in it
    with pytest.raises(MakeUnavailable):
        context.run(make.send, {"kind": "add_project", "idempotency_key": "k"})

    # Then nothing was posted: the retry sends it (a post cut off by the timeout might land)
    assert ATTEMPT_SECONDS > 3.0
    assert make_receiver.received == []
