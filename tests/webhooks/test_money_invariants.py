"""Regression tests of the money invariants at the worker (docs/reliability.md): state as a
function of every event in any order, duplicates refunded where the money arrives,
subscriptions first-class after checkout, and the holes the issue listed. Real Postgres, the
real worker, the Make.com receiver; Stripe's answers to the worker's own calls from a fake that
records them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import pytest

from payments.models import IssuedRefund
from payments.webhook_processing import WorkerPorts
from tests.webhooks import factories as f
from tests.webhooks.conftest import make_ports, rows
from tests.webhooks.test_webhook_worker import ledger, logs, purchase, run
from tools.local.make_receiver import MakeReceiverServer

pytestmark = pytest.mark.integration

DUE = int(time.time()) + 7 * 86400


class FakeStripe:
    """The worker's Stripe calls, recorded; refunds succeed like Stripe's would."""

    def __init__(self, subscriptions: dict[str, dict[str, Any]] | None = None) -> None:
        self.refunds: list[dict[str, Any]] = []
        self.canceled: list[str] = []
        self.subscriptions = subscriptions or {}
        self.invoice_intents: dict[str, str] = {}

    def create_refund(
        self, payment_intent: str, *, idempotency_key: str, **params: Any
    ) -> IssuedRefund:
        for done in self.refunds:
            if done["idempotency_key"] == idempotency_key:
                return done["issued"]  # type: ignore[no-any-return]
        issued = IssuedRefund(f.new_id("re_"), payment_intent, 9900, "usd", "succeeded")
        self.refunds.append(
            {"payment_intent": payment_intent, "idempotency_key": idempotency_key,
             "issued": issued, **params}
        )  # fmt: skip
        return issued

    def cancel_subscription_now(self, subscription_id: str, idempotency_key: str) -> None:
        self.canceled.append(subscription_id)

    def invoice_payment_intent(self, invoice_id: str) -> str | None:
        return self.invoice_intents.get(invoice_id)

    def retrieve_subscription(self, subscription_id: str) -> Mapping[str, Any]:
        return self.subscriptions[subscription_id]


@pytest.fixture
def stripe() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def worker(db: str, make_receiver: MakeReceiverServer, stripe: FakeStripe) -> WorkerPorts:
    ports = make_ports(db, make_receiver)
    return dataclasses.replace(ports, refunds=lambda: stripe, subscriptions=lambda: stripe)


def add_projects(receiver: MakeReceiverServer) -> list[str]:
    return [p["checkout_session_id"] for p in receiver.received if p["kind"] == "add_project"]


# --- order hides no money ----------------------------------------------------------------


def test_a_refund_processed_before_its_completion_is_counted_and_nothing_is_dispatched(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given a paid session refunded in full at once, its events delivered refund first
    session = f.checkout_session()
    refunded = f.event("refund.created", f.refund(session["payment_intent"], amount=9900))
    completed = f.event("checkout.session.completed", session)
    assert run(worker, refunded) == []
    assert run(worker, completed) == []
    # Then the purchase is refunded, and the project is not started for a refunded order
    assert (
        purchase(db, session["id"])["status"],
        purchase(db, session["id"])["amount_refunded"],
    ) == (
        "refunded",
        9900,
    )
    assert add_projects(make_receiver) == []


def test_a_charge_refunded_without_a_list_before_its_completion_is_counted(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    session = f.checkout_session()
    charge = f.charge(session["payment_intent"], amount_refunded=3000)
    assert run(worker, f.event("charge.refunded", charge)) == []
    assert run(worker, f.event("checkout.session.completed", session)) == []
    row = purchase(db, session["id"])
    assert (row["status"], row["amount_refunded"]) == ("partially_refunded", 3000)
    # Partly refunded is still held: the project starts, once
    assert add_projects(make_receiver) == [session["id"]]


def test_a_dispute_before_the_completion_holds_the_project_until_it_is_won(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    # Given a dispute opened before the completion was processed
    session = f.checkout_session()
    opened = f.dispute(session["payment_intent"], due_by=DUE)
    assert run(worker, f.event("charge.dispute.created", opened)) == []
    assert run(worker, f.event("checkout.session.completed", session)) == []
    assert purchase(db, session["id"])["status"] == "disputed"
    assert add_projects(make_receiver) == []
    # When the dispute is won, then the purchase is held again and the project starts, once
    won = {**opened, "status": "won"}
    assert run(worker, f.event("charge.dispute.closed", won, created=int(time.time()) + 5)) == []
    assert purchase(db, session["id"])["status"] == "paid"
    assert add_projects(make_receiver) == [session["id"]]


@pytest.mark.parametrize("created_too", [False, True])
def test_a_lost_dispute_is_its_own_state_whatever_arrived_before(
    db: str, worker: WorkerPorts, created_too: bool
) -> None:
    # Given a paid purchase, and a dispute closed lost delivered without (or before) created
    session = f.checkout_session()
    run(worker, f.event("checkout.session.completed", session))
    opened = f.dispute(session["payment_intent"], due_by=DUE)
    lost = {**opened, "status": "lost"}
    now = int(time.time())
    assert run(worker, f.event("charge.dispute.closed", lost, created=now + 10)) == []
    if created_too:
        assert run(worker, f.event("charge.dispute.created", opened, created=now)) == []
    # Then the purchase is lost to the dispute: not paid, not disputed
    assert purchase(db, session["id"])["status"] == "dispute_lost"


# --- one paid purchase per track ---------------------------------------------------------


def test_a_second_paid_purchase_of_a_held_track_is_refunded_in_full_and_not_dispatched(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer, stripe: FakeStripe,
    log_lines: Callable[[], str],
) -> None:  # fmt: skip
    # Given two sessions for the same track, paid in two tabs
    first, second = f.checkout_session(), f.checkout_session()
    assert run(worker, f.event("checkout.session.completed", first)) == []
    assert run(worker, f.event("checkout.session.completed", second)) == []
    # Then the second is a duplicate: refunded in full once, never sent to Make.com
    assert purchase(db, second["id"])["duplicate"] is True
    assert add_projects(make_receiver) == [first["id"]]
    [done] = stripe.refunds
    assert (done["payment_intent"], done["reason"]) == (second["payment_intent"], "duplicate")
    assert done["idempotency_key"] == f"duplicate-refund:{second['payment_intent']}"
    assert purchase(db, second["id"])["status"] == "refunded"
    # And it is logged and alerts a person
    assert "purchase.duplicate_paid" in [log["event_type"] for log in logs(db)]
    assert "refunding it in full" in log_lines()
    # And delivering it again changes nothing
    assert run(worker, f.event("checkout.session.completed", second)) == []
    assert len(stripe.refunds) == 1


def test_two_paid_switches_of_one_original_refund_the_second_switch(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer, stripe: FakeStripe
) -> None:
    original = f.checkout_session()
    run(worker, f.event("checkout.session.completed", original))
    pi = original["payment_intent"]
    one = f.checkout_session(product="website_audit_feedback", amount=7900, switch_from=pi)
    two = f.checkout_session(product="social_media_email_campaign", amount=4900, switch_from=pi)
    assert run(worker, f.event("checkout.session.completed", one)) == []
    assert run(worker, f.event("checkout.session.completed", two)) == []
    # The original is refunded once (the switch), the second switch in full (a duplicate)
    assert sorted(r["payment_intent"] for r in stripe.refunds) == sorted(
        [pi, two["payment_intent"]]
    )
    assert purchase(db, two["id"])["duplicate"] is True
    assert purchase(db, original["id"])["status"] == "switched"
    assert add_projects(make_receiver) == [original["id"], one["id"]]


def test_a_member_may_buy_again_when_the_business_allows_it(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer, stripe: FakeStripe
) -> None:
    repeat = dataclasses.replace(worker, allow_repeat_purchases=True)
    first, second = f.checkout_session(), f.checkout_session()
    run(repeat, f.event("checkout.session.completed", first))
    run(repeat, f.event("checkout.session.completed", second))
    assert stripe.refunds == []
    assert add_projects(make_receiver) == [first["id"], second["id"]]


# --- subscriptions are first-class -------------------------------------------------------


def _subscription_checkout(**extra: Any) -> dict[str, Any]:
    session = f.checkout_session(product="growth_monthly", amount=2900, mode="subscription")
    session["invoice"] = f.new_id("in_")
    session.update(extra)
    return session


def test_a_paid_subscription_checkout_is_a_paid_purchase_that_starts_the_project(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer
) -> None:
    session = _subscription_checkout()
    assert run(worker, f.event("checkout.session.completed", session)) == []
    row = purchase(db, session["id"])
    assert (row["status"], row["mode"], row["subscription_id"]) == (
        "paid",
        "subscription",
        session["subscription"],
    )
    [sent] = make_receiver.received
    assert (sent["kind"], sent["mode"], sent["product"], sent["interval"]) == (
        "add_project",
        "subscription",
        "growth_monthly",
        "month",
    )
    assert sent["subscription"] == session["subscription"]


def test_a_second_live_subscription_is_cancelled_and_its_first_payment_refunded(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer, stripe: FakeStripe
) -> None:
    first, second = _subscription_checkout(), _subscription_checkout()
    stripe.invoice_intents[second["invoice"]] = "pi_second_first_invoice"
    run(worker, f.event("checkout.session.completed", first))
    run(worker, f.event("checkout.session.completed", second))
    assert stripe.canceled == [second["subscription"]]
    [done] = stripe.refunds
    assert (done["payment_intent"], done["reason"]) == ("pi_second_first_invoice", "duplicate")
    assert [p["checkout_session_id"] for p in make_receiver.received] == [first["id"]]
    assert purchase(db, second["id"])["status"] == "refunded"


def test_a_subscription_whose_first_payment_failed_is_cancelled(
    db: str, worker: WorkerPorts, stripe: FakeStripe
) -> None:
    session = _subscription_checkout(payment_status="unpaid")
    run(worker, f.event("checkout.session.completed", session))
    failed = f.event("checkout.session.async_payment_failed", session)
    assert run(worker, failed) == []
    assert stripe.canceled == [session["subscription"]]


def test_renewals_are_logged_with_their_plan_and_a_failed_one_notifies_make(
    db: str, worker: WorkerPorts, make_receiver: MakeReceiverServer, stripe: FakeStripe
) -> None:
    # Given a member's subscription as Stripe holds it
    sub = f.subscription(member_id=f.MEMBER, lookup_key="scale_monthly_usd_v1", unit_amount=7900)
    stripe.subscriptions[sub["id"]] = sub
    run(worker, f.event("customer.subscription.created", sub))
    # When a renewal is paid, then the next one fails and Stripe moves it to past_due
    paid = f.invoice(sub["id"], customer=sub["customer"], amount=7900)
    assert run(worker, f.event("invoice.paid", paid)) == []
    stripe.subscriptions[sub["id"]] = {**sub, "status": "past_due"}
    failed = f.invoice(sub["id"], customer=sub["customer"], amount=7900, paid=False)
    later = int(time.time()) + 60
    assert run(worker, f.event("invoice.payment_failed", failed, created=later)) == []
    # Then both are logged with the plan and the member
    by_type = {log["event_type"]: log for log in logs(db)}
    for kind in ("invoice.paid", "invoice.payment_failed"):
        assert by_type[kind]["user_id"] == f.MEMBER
        assert by_type[kind]["metadata"]["product"] == "scale_monthly"
    assert by_type["invoice.paid"]["amount"] == 7900
    # And the subscription is past_due, and Make.com heard of the failed payment
    [(status,)] = rows(db, "select status from subscriptions where id = %s", sub["id"])
    assert status == "past_due"
    [notice] = [p for p in make_receiver.received if p["kind"] == "payment_failed"]
    assert (notice["plan"], notice["invoice"], notice["amount_due"]) == (
        "scale_monthly",
        failed["id"],
        7900,
    )
    assert notice["member_id"] == f.MEMBER


# --- after erasure, and the smaller holes ------------------------------------------------


def test_events_about_an_erased_member_name_the_pseudonym_never_the_id(
    db: str, worker: WorkerPorts
) -> None:
    # Given a member who bought, then erased their data
    session = f.checkout_session()
    run(worker, f.event("checkout.session.completed", session))
    worker.store.call("erase_member_data", p_member_id=f.MEMBER, p_requested_by=f.MEMBER)
    # When Stripe sends a late event about that purchase (its metadata still names them)
    intent = f.payment_intent(session["payment_intent"], member_id=f.MEMBER)
    intent["created"] = int(time.time()) - 3600
    late = f.event("payment_intent.succeeded", intent)
    assert run(worker, late) == []
    # Then nothing names the member again
    with psycopg.connect(db) as conn:
        for table in ("payment_logs", "purchases", "customers", "refunds"):
            found = conn.execute(
                f"select count(*) from {table} t where strpos(t::text, %s) > 0",
                (f.MEMBER,),
            ).fetchone()
            assert found == (0,), table


def test_a_failed_refund_alerts_a_person(
    db: str, worker: WorkerPorts, log_lines: Callable[[], str]
) -> None:
    session = f.checkout_session()
    run(worker, f.event("checkout.session.completed", session))
    failed = f.refund(session["payment_intent"], amount=9900, status="failed")
    assert run(worker, f.event("refund.failed", failed)) == []
    assert "a refund failed: the money was not returned" in log_lines()
    assert purchase(db, session["id"])["status"] == "paid"
    assert ledger(db)
