"""The worker on the real Postgres: every handled event type, exactly-once effects, ordering,
Make.com dispatch and partial batch failures."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from functions.webhook_worker import app as worker_app
from payments import errors, webhook_processing
from payments.webhook_processing import WorkerPorts
from tests.conftest import event_file
from tests.webhooks import factories as f
from tests.webhooks.conftest import context, make_ports, rows, sqs_event, sqs_record
from tools.local.make_receiver import MakeReceiverServer

pytestmark = pytest.mark.integration


def run(ports: WorkerPorts, *stripe_events: dict[str, Any] | str) -> list[str]:
    """Hand the events to the worker as one SQS batch; return the failed message ids."""
    response = worker_app.handle_batch(sqs_event(*stripe_events), context(), ports)
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def purchase(url: str, session_id: str) -> dict[str, Any]:
    [(row,)] = rows(
        url, "select to_jsonb(p) from purchases p where checkout_session_id = %s", session_id
    )
    return dict(row)


def logs(url: str) -> list[dict[str, Any]]:
    return [dict(r[0]) for r in rows(url, "select to_jsonb(l) from payment_logs l order by id")]


def ledger(url: str) -> dict[str, str]:
    return dict(rows(url, "select event_id, outcome from processed_events"))  # type: ignore[arg-type]


def paid_purchase(ports: WorkerPorts, **session: Any) -> dict[str, Any]:
    """Given: a purchase paid through checkout.session.completed."""
    obj = f.checkout_session(**session)
    assert run(ports, f.event("checkout.session.completed", obj)) == []
    return obj


# --- checkout ---------------------------------------------------------------------------


def test_a_paid_session_records_the_purchase_logs_it_and_triggers_make_once(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given a paid checkout.session.completed for a member's product
    session = f.checkout_session(product="website_audit_feedback", amount=7900)
    completed = f.event("checkout.session.completed", session)

    # When the worker processes it
    failed = run(ports, completed)

    # Then the purchase is paid, one log row describes it without personal data ...
    assert failed == []
    row = purchase(db, session["id"])
    assert (row["status"], row["member_id"], row["product"], row["amount"]) == (
        "paid",
        f.MEMBER,
        "website_audit_feedback",
        7900,
    )
    [log] = logs(db)
    assert (log["event_type"], log["user_id"], log["amount"], log["currency"], log["status"]) == (
        "checkout.session.completed",
        f.MEMBER,
        7900,
        "usd",
        "paid",
    )
    assert (log["stripe_event_id"], log["stripe_object_id"]) == (completed["id"], session["id"])
    assert "example@example.com" not in json.dumps(log)
    # ... and Make.com received the add_project dispatch, keyed by the purchase it starts
    assert make_receiver.received == [
        {
            "kind": "add_project",
            "idempotency_key": f"add_project:{session['id']}",
            "member_id": f.MEMBER,
            "product": "website_audit_feedback",
            "product_name": "Website Audit & Feedback",
            "mode": "payment",
            "interval": None,
            "amount": 7900,
            "currency": "usd",
            "checkout_session_id": session["id"],
            "payment_intent": session["payment_intent"],
            "subscription": None,
        }
    ]
    assert rows(db, "select kind, status from outbox") == [("add_project", "sent")]
    assert ledger(db) == {completed["id"]: "applied"}


def test_an_unpaid_completed_session_is_processing_until_the_async_payment_succeeds(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given a session completed with a delayed payment method
    session = f.checkout_session(payment_status="unpaid")
    run(ports, f.event("checkout.session.completed", session))
    assert purchase(db, session["id"])["status"] == "processing"
    assert make_receiver.received == []

    # When the payment later succeeds
    settled = f.event(
        "checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"}
    )
    run(ports, settled)

    # Then the purchase is paid and Make.com is called once, for that purchase
    assert purchase(db, session["id"])["status"] == "paid"
    assert [p["idempotency_key"] for p in make_receiver.received] == [
        f"add_project:{session['id']}"
    ]


def test_a_failed_async_payment_marks_the_purchase_failed_without_make(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    session = f.checkout_session(payment_status="unpaid")
    run(ports, f.event("checkout.session.completed", session))

    run(ports, f.event("checkout.session.async_payment_failed", session))

    assert purchase(db, session["id"])["status"] == "failed"
    assert make_receiver.received == []


def test_an_expired_session_marks_the_open_purchase_expired(db: str, ports: WorkerPorts) -> None:
    # Given the open purchase our checkout recorded
    session = f.checkout_session(payment_status="unpaid", status="expired")
    ports.store.call(
        "record_checkout_session",
        p_checkout_session_id=session["id"],
        p_member_id=f.MEMBER,
        p_product="business_plan_builder",
        p_amount=9900,
        p_currency="usd",
    )

    run(ports, f.event("checkout.session.expired", session))

    assert purchase(db, session["id"])["status"] == "expired"


def test_a_late_unpaid_completion_never_moves_a_paid_purchase_back(
    db: str, ports: WorkerPorts
) -> None:
    session = f.checkout_session(payment_status="unpaid")
    run(
        ports,
        f.event("checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"}),
    )

    run(ports, f.event("checkout.session.completed", session))

    assert purchase(db, session["id"])["status"] == "paid"


def test_the_member_comes_from_client_reference_id_when_metadata_lacks_it(
    db: str, ports: WorkerPorts
) -> None:
    session = f.checkout_session()
    session["metadata"].pop("member_id")
    session["client_reference_id"] = "mem_from_reference"

    run(ports, f.event("checkout.session.completed", session))

    assert purchase(db, session["id"])["member_id"] == "mem_from_reference"


# --- payment intents --------------------------------------------------------------------


def test_payment_intent_events_settle_the_purchase_they_paid(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given two purchases still processing
    good = f.checkout_session(payment_status="unpaid")
    bad = f.checkout_session(payment_status="unpaid")
    run(
        ports,
        f.event("checkout.session.completed", good),
        f.event("checkout.session.completed", bad),
    )

    # When one intent succeeds and the other fails
    succeeded = f.event("payment_intent.succeeded", f.payment_intent(good["payment_intent"]))
    declined = f.event(
        "payment_intent.payment_failed",
        f.payment_intent(bad["payment_intent"], status="requires_payment_method"),
    )
    assert run(ports, succeeded, declined) == []

    # Then one is paid (and dispatched to Make.com), the other failed; both are logged
    assert purchase(db, good["id"])["status"] == "paid"
    assert purchase(db, bad["id"])["status"] == "failed"
    assert [p["checkout_session_id"] for p in make_receiver.received] == [good["id"]]
    by_type = {log["event_type"]: log for log in logs(db)}
    assert by_type["payment_intent.succeeded"]["user_id"] == f.MEMBER
    assert by_type["payment_intent.payment_failed"]["metadata"]["failure_code"] == "card_declined"


# --- refunds ----------------------------------------------------------------------------


def test_refund_events_track_the_refunded_amount_and_status(db: str, ports: WorkerPorts) -> None:
    # Given a paid $99 purchase
    session = paid_purchase(ports)
    intent = session["payment_intent"]

    # When $30 is refunded
    partial = f.refund(intent, amount=3000)
    run(ports, f.event("refund.created", partial))

    # Then the purchase is partially refunded
    row = purchase(db, session["id"])
    assert (row["status"], row["amount_refunded"]) == ("partially_refunded", 3000)

    # When the rest is refunded and Stripe reports the charge
    rest = f.refund(intent, amount=6900)
    run(ports, f.event("charge.refunded", f.charge(intent, refunds=[rest, partial])))

    # Then it is refunded in full and both refunds are recorded
    row = purchase(db, session["id"])
    assert (row["status"], row["amount_refunded"]) == ("refunded", 9900)
    assert sorted(rows(db, "select amount, status from refunds")) == [
        (3000, "succeeded"),
        (6900, "succeeded"),
    ]

    # When the second refund fails
    run(ports, f.event("refund.failed", {**rest, "status": "failed"}))

    # Then only the first still counts
    row = purchase(db, session["id"])
    assert (row["status"], row["amount_refunded"]) == ("partially_refunded", 3000)


def test_a_refund_made_by_an_admin_keeps_who_asked_and_why(db: str, ports: WorkerPorts) -> None:
    # Given a refund row our admin API wrote before Stripe's events arrived
    session = paid_purchase(ports)
    refund = f.refund(session["payment_intent"], amount=1000, status="pending")
    rows(
        db,
        "insert into refunds (id, payment_intent_id, member_id, amount, currency, status, "
        "reason, note, requested_by) values (%s, %s, %s, 1000, 'usd', 'pending', "
        "'requested_by_customer', 'late delivery', 'mem_admin') returning id",
        refund["id"],
        session["payment_intent"],
        f.MEMBER,
    )

    # When refund.updated reports it succeeded
    run(ports, f.event("refund.updated", {**refund, "status": "succeeded"}))

    # Then the status is updated and the admin's fields are intact
    assert rows(db, "select status, note, requested_by from refunds") == [
        ("succeeded", "late delivery", "mem_admin")
    ]


def test_an_older_refund_event_does_not_overwrite_a_newer_status(
    db: str, ports: WorkerPorts
) -> None:
    session = paid_purchase(ports)
    refund = f.refund(session["payment_intent"], amount=1000)
    now = int(time.time())
    run(ports, f.event("refund.failed", {**refund, "status": "failed"}, created=now))

    run(ports, f.event("refund.created", {**refund, "status": "pending"}, created=now - 5))

    assert rows(db, "select status from refunds") == [("failed",)]
    assert purchase(db, session["id"])["amount_refunded"] == 0


# --- disputes ---------------------------------------------------------------------------


def test_a_dispute_marks_the_purchase_disputed_and_alerts_with_amount_and_deadline(
    db: str, ports: WorkerPorts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a paid purchase and a way to see alerts
    alerts: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(webhook_processing, "alert", lambda m, **c: alerts.append((m, c)))
    session = paid_purchase(ports)
    due_by = int(time.time()) + 7 * 86400

    # When the cardholder disputes it (and Stripe delivers the event twice)
    opened = f.event("charge.dispute.created", f.dispute(session["payment_intent"], due_by=due_by))
    run(ports, opened)
    run(ports, opened)

    # Then the purchase is disputed and exactly one alert names the amount and the deadline
    assert purchase(db, session["id"])["status"] == "disputed"
    [(_message, details)] = alerts
    assert (details["amount"], details["currency"], details["member_id"]) == (9900, "usd", f.MEMBER)
    assert details["evidence_due_by"].startswith(time.strftime("%Y-%m-%d", time.gmtime(due_by)))

    # When the dispute is won
    won = {**opened["data"]["object"], "status": "won"}
    run(ports, f.event("charge.dispute.closed", won))

    # Then the purchase is paid again
    assert purchase(db, session["id"])["status"] == "paid"


# --- subscriptions ----------------------------------------------------------------------


def test_subscription_events_keep_the_subscription_current(db: str, ports: WorkerPorts) -> None:
    # Given a member whose Stripe customer we know, and a subscription without metadata
    rows(db, "insert into customers values ('mem_sub', 'cus_sub1') returning member_id")
    sub = f.subscription(customer="cus_sub1")
    t0 = int(time.time()) - 100

    # When it is created, set to cancel at period end, paused, resumed and finally deleted
    steps = [
        ("customer.subscription.created", {}, "active"),
        ("customer.subscription.updated", {"cancel_at_period_end": True}, "active"),
        ("customer.subscription.paused", {"status": "paused"}, "paused"),
        ("customer.subscription.resumed", {"status": "active"}, "active"),
        ("customer.subscription.deleted", {"status": "canceled"}, "canceled"),
    ]
    for offset, (event_type, changes, expected) in enumerate(steps):
        run(ports, f.event(event_type, {**sub, **changes}, created=t0 + offset))
        # Then each step is reflected, with the member and product resolved
        [(status, member, product)] = rows(
            db, "select status, member_id, product from subscriptions where id = %s", sub["id"]
        )
        assert (status, member, product) == (expected, "mem_sub", "growth_monthly"), event_type

    assert {log["user_id"] for log in logs(db)} == {"mem_sub"}
    assert [log["amount"] for log in logs(db)] == [2900] * 5


def test_out_of_order_subscription_events_leave_the_newest_state(
    db: str, ports: WorkerPorts
) -> None:
    # Given a subscription's events delivered newest first
    sub = f.subscription(member_id="mem_order")
    t0 = int(time.time()) - 100
    created = f.event("customer.subscription.created", {**sub, "status": "incomplete"}, created=t0)
    activated = f.event("customer.subscription.updated", sub, created=t0 + 1)
    canceling = f.event(
        "customer.subscription.updated", {**sub, "cancel_at_period_end": True}, created=t0 + 2
    )

    # When they are processed in reverse order
    for stripe_event in (canceling, activated, created):
        assert run(ports, stripe_event) == []

    # Then the state is the newest event's; the older ones are stale in the ledger
    assert rows(db, "select status, cancel_at_period_end from subscriptions") == [("active", True)]
    assert ledger(db) == {
        canceling["id"]: "applied",
        activated["id"]: "stale",
        created["id"]: "stale",
    }


def test_a_canceled_subscription_is_not_revived_by_an_update_of_the_same_second(
    db: str, ports: WorkerPorts
) -> None:
    sub = f.subscription(member_id="mem_x")
    now = int(time.time())
    run(ports, f.event("customer.subscription.deleted", {**sub, "status": "canceled"}, created=now))

    run(ports, f.event("customer.subscription.updated", sub, created=now))

    assert rows(db, "select status from subscriptions") == [("canceled",)]


# --- anything else ----------------------------------------------------------------------


def test_an_unhandled_event_type_is_acknowledged_and_ignored(db: str, ports: WorkerPorts) -> None:
    other = f.event("customer.created", {"id": "cus_other", "object": "customer"})

    assert run(ports, other) == []

    assert ledger(db) == {other["id"]: "ignored"}
    assert logs(db) == []


# --- exactly once -----------------------------------------------------------------------


def test_the_same_event_delivered_five_times_has_one_effect(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given one paid-session event
    completed = f.event("checkout.session.completed", f.checkout_session())

    # When it arrives five times (Stripe retries and SQS redeliveries, in one and many batches)
    assert run(ports, completed, completed) == []
    for _ in range(3):
        assert run(ports, completed) == []

    # Then there is one purchase, one log row, one ledger entry and one Make.com call
    assert len(rows(db, "select 1 from purchases")) == 1
    assert len(logs(db)) == 1
    assert ledger(db) == {completed["id"]: "applied"}
    assert len(make_receiver.received) == 1


def test_two_workers_racing_on_one_event_produce_one_effect(
    db: str, make_receiver: MakeReceiverServer
) -> None:
    # Given two workers, each with its own database connection
    completed = f.event("checkout.session.completed", f.checkout_session())
    workers = [make_ports(db, make_receiver) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[list[str]] = []

    def work(ports: WorkerPorts) -> None:
        start.wait()
        for _ in range(5):
            results.append(run(ports, completed))

    # When both process the same event at the same moment, several times
    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for w in workers:
        w.store.close()  # type: ignore[attr-defined]

    # Then every delivery succeeded, and there is one effect and one Make.com call
    assert results == [[]] * 10
    assert len(rows(db, "select 1 from purchases")) == 1
    assert len(logs(db)) == 1
    assert len(make_receiver.received) == 1


def test_make_down_then_up_dispatches_exactly_once(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given Make.com failing for longer than one invocation's retries
    make_receiver.inject_fault(503, times=2)
    completed = f.event("checkout.session.completed", f.checkout_session())

    # When the event is processed, then redelivered by SQS after Make.com is back
    first = run(ports, completed)
    second = run(ports, completed)
    third = run(ports, completed)

    # Then only the first attempt failed, the purchase was applied once, and one dispatch landed
    assert (len(first), second, third) == (1, [], [])
    assert ledger(db) == {completed["id"]: "applied"}
    assert len(make_receiver.received) == 1
    assert rows(db, "select status, attempts from outbox") == [("sent", 2)]


def test_a_database_error_fails_only_its_own_message(db: str, ports: WorkerPorts) -> None:
    # Given a database that refuses one event of the batch (a trigger raising on its id)
    good = f.event("checkout.session.completed", f.checkout_session())
    unlucky = f.event("checkout.session.completed", f.checkout_session())
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "create or replace function pg_temp_refuse() returns trigger language plpgsql as $$"
            f" begin if new.event_id = '{unlucky['id']}' then raise exception 'refused'; end if;"
            " return new; end $$"
        )
        conn.execute(
            "create trigger refuse_one before insert on processed_events"
            " for each row execute function pg_temp_refuse()"
        )
    try:
        batch = sqs_event(good, unlucky)

        # When the batch is processed (in one transaction, each event in its own savepoint)
        response = worker_app.handle_batch(batch, context(), ports)
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("drop trigger refuse_one on processed_events")
            conn.execute("drop function pg_temp_refuse()")

    # Then exactly the unlucky message is reported, and the other took effect
    assert response["batchItemFailures"] == [{"itemIdentifier": batch["Records"][1]["messageId"]}]
    assert ledger(db) == {good["id"]: "applied"}
    with psycopg.connect(db) as conn:
        purchases = conn.execute("select checkout_session_id from purchases").fetchall()
    assert purchases == [(good["data"]["object"]["id"],)]


def test_a_database_outage_fails_the_whole_batch_and_loses_nothing(
    db: str, make_receiver: MakeReceiverServer
) -> None:
    # Given a database that is down for the batch call
    first = f.event("checkout.session.completed", f.checkout_session())
    second = f.event("payment_intent.succeeded", f.payment_intent(f.new_id("pi_")))
    real = make_ports(db, make_receiver)

    class DownStore:
        def call(self, function: str, **params: Any) -> Any:
            raise errors.UpstreamUnavailable("db down", code="database_unavailable")

        def call_as_member(self, member_id: str, function: str, **params: Any) -> Any:
            raise AssertionError("not used")

    batch = sqs_event(first, second)
    response = worker_app.handle_batch(
        batch, context(), WorkerPorts(store=DownStore(), make=real.make, refunds=real.refunds)
    )

    # Then every message returns to the queue and nothing was recorded
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {
        r["messageId"] for r in batch["Records"]
    }
    assert ledger(db) == {}
    real.store.close()  # type: ignore[attr-defined]


def test_a_malformed_message_is_dropped_once_with_its_reason_and_does_not_block_the_batch(
    db: str, ports: WorkerPorts, log_lines: Callable[[], str]
) -> None:
    # Given a batch with a body that is not JSON, one that is not an event, and a good event
    good = f.event("checkout.session.completed", f.checkout_session())
    batch = {
        "Records": [
            sqs_record("{not json"),
            sqs_record('{"object": "customer"}'),
            sqs_record(json.dumps(good), event_id=good["id"]),
        ]
    }

    # When it is processed
    response = worker_app.handle_batch(batch, context(), ports)

    # Then the bad messages are acknowledged (a retry cannot fix them) with their reason
    # logged as an error, and the event took effect
    assert response["batchItemFailures"] == []
    assert ledger(db) == {good["id"]: "applied"}
    output = log_lines()
    assert output.count("unreadable stripe event message dropped") == 2
    assert "The payload is not JSON." in output
    assert "{not json" not in output


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("checkout.session.completed", {"object": "checkout.session"}),
        ("charge.refunded", {"object": "charge", "amount_refunded": 100}),
        ("customer.subscription.updated", {"id": "sub_x", "object": "subscription"}),
    ],
)
def test_an_event_missing_what_its_type_always_carries_is_refused_once(
    db: str, ports: WorkerPorts, event_type: str, payload: dict[str, Any]
) -> None:
    # Given an event without data.object.id, or a subscription without a customer
    event = f.event(event_type, payload)
    # When it is delivered, then redelivered
    assert run(ports, event) == []
    assert run(ports, event) == []
    # Then it is recorded once as refused, changes nothing, and never goes back to the queue
    assert ledger(db) == {event["id"]: "refused"}
    assert rows(db, "select count(*) from payment_logs") == [(0,)]
    assert rows(db, "select count(*) from purchases") == [(0,)]


def test_an_event_of_the_other_stripe_mode_is_refused(
    db: str, make_receiver: MakeReceiverServer
) -> None:
    # Given a worker holding a test-mode key, and a live-mode event (a misconfigured endpoint)
    worker = make_ports(db, make_receiver)
    test_mode = dataclasses.replace(worker, livemode=False)
    event = {**f.event("checkout.session.completed", f.checkout_session()), "livemode": True}
    # When it is delivered
    assert run(test_mode, event) == []
    # Then nothing takes effect and nothing reaches Make.com
    assert ledger(db) == {event["id"]: "refused"}
    assert rows(db, "select count(*) from purchases") == [(0,)]
    assert make_receiver.received == []
    worker.store.close()  # type: ignore[attr-defined]


def test_the_sample_sqs_event_is_processed(
    db: str, ports: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    sample = json.loads(event_file("webhook_worker").read_text())

    response = worker_app.handle_batch(sample, context(), ports)

    assert response == {"batchItemFailures": []}
    assert len(make_receiver.received) == 1


def test_the_lambda_entry_point_builds_its_clients_from_the_environment(
    db: str, env: pytest.MonkeyPatch, make_receiver: MakeReceiverServer
) -> None:
    # Given the worker's environment
    env.setenv("DATABASE_URL", db)
    env.setenv("STRIPE_SECRET_KEY", "sk_test_unused")
    env.setenv("MAKE_WEBHOOK_URL", make_receiver.url + "/hook")
    env.setenv("MAKE_API_KEY", make_receiver.api_key)
    worker_app._ports.cache_clear()
    completed = f.event("checkout.session.completed", f.checkout_session())

    # When Lambda invokes it
    response = worker_app.lambda_handler(sqs_event(completed), context())

    # Then the event is applied and dispatched
    assert response == {"batchItemFailures": []}
    assert len(make_receiver.received) == 1
    worker_app._ports.cache_clear()


def test_a_missing_make_setting_fails_the_cold_start_with_its_name(
    db: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("DATABASE_URL", db)
    env.setenv("STRIPE_SECRET_KEY", "sk_test_unused")

    with pytest.raises(errors.ConfigurationError, match="MAKE_WEBHOOK_URL, MAKE_API_KEY"):
        worker_app.lambda_handler(sqs_event(), context())
