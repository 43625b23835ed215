"""``charge.refunded`` as Stripe sends it and as an expanded charge looks, through the real
worker path on the real Postgres; and the test factories build what the pinned API version
sends.

Stripe's ``charge.refunded`` carries ``amount_refunded`` and no refunds list (the charge's
``refunds`` are included only with ``expand[]=refunds``), so production depends on the
worker's branch that trusts ``amount_refunded``. A charge that does carry its refunds (one
fetched with the list expanded) records each listed refund instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from payments.webhook_processing import WorkerPorts, process_event_message
from tests.webhooks import factories as f
from tests.webhooks.conftest import rows
from tools.stripe_emulator.conformance import Conformance

pytestmark = pytest.mark.integration


def deliver(ports: WorkerPorts, event: dict[str, Any]) -> str:
    """One queued event through the worker; its outcome."""
    return process_event_message(json.dumps(event), ports).outcome


def paid_purchase(ports: WorkerPorts, amount: int = 9900) -> dict[str, Any]:
    """Given: a purchase paid through checkout.session.completed."""
    session = f.checkout_session(amount=amount)
    assert deliver(ports, f.event("checkout.session.completed", session)) == "applied"
    return session


def purchase(url: str, payment_intent: str) -> tuple[str, int]:
    [(status, refunded)] = rows(
        url,
        "select status, amount_refunded from purchases where payment_intent_id = %s",
        payment_intent,
    )
    return status, refunded


def refund_rows(url: str) -> list[tuple[str, int, str]]:
    return sorted(rows(url, "select id, amount, status from refunds"))  # type: ignore[arg-type]


# --- as Stripe sends it: no refunds list ------------------------------------------------------


def test_a_charge_refunded_without_a_list_refunds_by_amount_refunded(
    db: str, ports: WorkerPorts
) -> None:
    # Given a paid $99 purchase
    session = paid_purchase(ports)
    intent = session["payment_intent"]

    # When Stripe reports $30 refunded on the charge, with no refunds list, as it does
    partial = f.charge(intent, amount_refunded=3000)
    assert "refunds" not in partial
    assert deliver(ports, f.event("charge.refunded", partial)) == "applied"

    # Then the purchase is partially refunded by that amount, and no refund row is invented
    assert purchase(db, intent) == ("partially_refunded", 3000)
    assert refund_rows(db) == []
    [(log_status, log_amount)] = rows(
        db, "select status, amount from payment_logs where event_type = 'charge.refunded'"
    )
    assert (log_status, log_amount) == ("partially_refunded", 3000)

    # When the rest is refunded
    deliver(ports, f.event("charge.refunded", f.charge(intent, amount_refunded=9900)))

    # Then it is refunded in full
    assert purchase(db, intent) == ("refunded", 9900)


def test_a_charge_refunded_without_a_list_never_lowers_what_refund_events_recorded(
    db: str, ports: WorkerPorts
) -> None:
    # Given a $99 purchase with a $50 refund already recorded from refund.created
    session = paid_purchase(ports)
    intent = session["payment_intent"]
    deliver(ports, f.event("refund.created", f.refund(intent, amount=5000)))

    # When an older charge.refunded (from the first, $20 refund) arrives late
    late = f.charge(intent, amount_refunded=2000)
    deliver(ports, f.event("charge.refunded", late, created=int(time.time()) - 60))

    # Then the larger, recorded amount stands
    assert purchase(db, intent) == ("partially_refunded", 5000)
    assert [amount for _id, amount, _status in refund_rows(db)] == [5000]


# --- an expanded charge: the refunds listed -----------------------------------------------


def test_a_charge_refunded_with_a_list_records_each_listed_refund(
    db: str, ports: WorkerPorts
) -> None:
    # Given a paid $99 purchase
    session = paid_purchase(ports)
    intent = session["payment_intent"]

    # When the charge arrives with its refunds listed: $30 done, $20 still pending
    done = f.refund(intent, amount=3000)
    pending = f.refund(intent, amount=2000, status="pending")
    listed = f.charge(intent, refunds=[pending, done])
    assert listed["amount_refunded"] == 5000
    deliver(ports, f.event("charge.refunded", listed))

    # Then both refunds are recorded and count against the purchase
    assert refund_rows(db) == sorted(
        [(done["id"], 3000, "succeeded"), (pending["id"], 2000, "pending")]
    )
    assert purchase(db, intent) == ("partially_refunded", 5000)


def test_a_partial_list_falls_back_to_amount_refunded(db: str, ports: WorkerPorts) -> None:
    # Given a paid $99 purchase
    session = paid_purchase(ports)
    intent = session["payment_intent"]

    # When the listed refunds are only a first page (has_more) of $99 refunded
    first_page = [f.refund(intent, amount=1000)]
    charge = f.charge(intent, amount_refunded=9900, refunds=first_page, refunds_has_more=True)
    deliver(ports, f.event("charge.refunded", charge))

    # Then the page is not taken for the whole: the charge's own total decides
    assert purchase(db, intent) == ("refunded", 9900)
    assert refund_rows(db) == []


# --- the factories build what the pinned version sends ----------------------------------------

DUE = int(time.time()) + 7 * 86400
FACTORY_EVENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "checkout.session.completed": lambda: f.checkout_session(),
    "checkout.session.async_payment_succeeded": lambda: f.checkout_session(mode="subscription"),
    "checkout.session.expired": lambda: f.checkout_session(status="expired"),
    "payment_intent.succeeded": lambda: f.payment_intent("pi_1"),
    "payment_intent.payment_failed": lambda: f.payment_intent(
        "pi_1", status="requires_payment_method"
    ),
    "refund.created": lambda: f.refund("pi_1", amount=1000),
    "refund.failed": lambda: f.refund("pi_1", amount=1000, status="failed"),
    "charge.refunded": lambda: f.charge("pi_1", amount_refunded=1000),
    "charge.dispute.created": lambda: f.dispute("pi_1", due_by=DUE),
    "customer.subscription.updated": lambda: f.subscription(member_id=f.MEMBER),
}


@pytest.mark.parametrize("event_type", sorted(FACTORY_EVENTS))
def test_the_factories_build_events_shaped_as_the_pinned_version(event_type: str) -> None:
    event = f.event(event_type, FACTORY_EVENTS[event_type]())

    assert Conformance().check_event(event) == []


def test_a_charge_with_its_refunds_listed_is_not_what_an_event_carries() -> None:
    listed = f.charge("pi_1", refunds=[f.refund("pi_1", amount=1000)])

    found = Conformance().check_event(f.event("charge.refunded", listed))

    assert found == ["data.object.refunds: only included with expand[]=refunds"]
