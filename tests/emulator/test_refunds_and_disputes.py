"""Refunds (limits, pending refunds) and disputes."""

from __future__ import annotations

import time

import pytest
import stripe

from tests.emulator.conftest import Helpers, WebhookReceiver, paid_payment

pytestmark = pytest.mark.integration


def test_refund_without_amount_refunds_everything_left(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given a $99.00 payment already refunded by $10.00
    _session, intent = paid_payment(client, helpers, 9900)
    client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1000})

    # When a refund without amount is created
    rest = client.v1.refunds.create(
        params={
            "payment_intent": intent.id,
            "reason": "requested_by_customer",
            "metadata": {"ticket": "T-1"},
        }
    )

    # Then it refunds the remaining $89.00 and the charge is fully refunded
    assert rest.id.startswith("re_")
    assert (rest.amount, rest.status, rest.reason) == (8900, "succeeded", "requested_by_customer")
    assert rest.metadata.to_dict() == {"ticket": "T-1"}
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (9900, True)
    helpers.flush()
    assert receiver.types().count("refund.created") == 2
    assert receiver.types().count("charge.refunded") == 2


def test_refund_over_the_remaining_amount_is_amount_too_large(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    _session, intent = paid_payment(client, helpers, 5000)
    client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 3000})

    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 2001})

    assert error.value.http_status == 400
    assert (error.value.code, error.value.param) == ("amount_too_large", "amount")
    assert "greater than unrefunded amount on charge ($20.00)" in str(error.value.user_message)


def test_refunding_a_fully_refunded_charge_is_charge_already_refunded(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    _session, intent = paid_payment(client, helpers)
    client.v1.refunds.create(params={"charge": intent.latest_charge})

    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 1})

    assert error.value.code == "charge_already_refunded"


def test_refunds_are_listed_and_retrieved_by_payment_intent(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    _s1, first = paid_payment(client, helpers)
    _s2, second = paid_payment(client, helpers)
    mine = client.v1.refunds.create(params={"payment_intent": first.id, "amount": 100})
    client.v1.refunds.create(params={"payment_intent": second.id, "amount": 100})

    listed = client.v1.refunds.list(params={"payment_intent": first.id})

    assert [r.id for r in listed.data] == [mine.id]
    assert client.v1.refunds.retrieve(mine.id).charge == first.latest_charge


def test_pending_refund_that_fails_gives_the_amount_back(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given refunds that start out pending
    _session, intent = paid_payment(client, helpers, 4000)
    helpers.post("/refunds/mode", {"next_status": "pending"})
    refund = client.v1.refunds.create(params={"payment_intent": intent.id})
    during = client.v1.charges.retrieve(intent.latest_charge)

    # When the bank reports the refund failed
    helpers.post(f"/refunds/{refund.id}/settle", {"status": "failed"})

    # Then it counted against the charge while pending, and no longer does
    assert refund.status == "pending"
    assert during.amount_refunded == 4000
    failed = client.v1.refunds.retrieve(refund.id)
    assert failed.status == "failed"
    assert failed.failure_reason
    after = client.v1.charges.retrieve(intent.latest_charge)
    assert (after.amount_refunded, after.refunded) == (0, False)
    helpers.flush()
    assert receiver.types()[-3:] == ["refund.updated", "charge.refund.updated", "refund.failed"]


def test_pending_refund_that_succeeds_sends_refund_updated(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    _session, intent = paid_payment(client, helpers)
    helpers.post("/refunds/mode", {"next_status": "pending", "count": 1})
    pending = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})
    immediate = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})

    helpers.post(f"/refunds/{pending.id}/settle", {"status": "succeeded"})

    assert (pending.status, immediate.status) == ("pending", "succeeded")
    assert client.v1.refunds.retrieve(pending.id).status == "succeeded"
    helpers.flush()
    updated = [d.event() for d in receiver.received() if d.event()["type"] == "refund.updated"]
    assert updated[-1]["data"]["object"]["id"] == pending.id
    assert updated[-1]["data"]["previous_attributes"]["status"] == "pending"


def test_refund_needs_a_payment_intent_or_a_charge(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.refunds.create(params={"amount": 100})
    assert error.value.code == "parameter_missing"


def test_dispute_marks_the_charge_and_closing_it_sends_dispute_closed(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given a paid charge
    _session, intent = paid_payment(client, helpers, 7000)

    # When the cardholder disputes it, and the dispute is later won
    opened = helpers.post("/disputes", {"payment_intent": intent.id, "reason": "fraudulent"})
    disputed_charge = client.v1.charges.retrieve(intent.latest_charge)
    with pytest.raises(stripe.InvalidRequestError) as refund_error:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    helpers.post(f"/disputes/{opened['id']}/close", {"status": "won"})

    # Then the dispute is shaped like Stripe's and the events were sent
    dispute = client.v1.disputes.retrieve(opened["id"])
    assert dispute.id.startswith("dp_")
    assert (dispute.amount, dispute.charge, dispute.payment_intent) == (
        7000,
        intent.latest_charge,
        intent.id,
    )
    assert (dispute.status, dispute.reason) == ("won", "fraudulent")
    assert dispute.evidence_details.due_by > time.time()
    assert disputed_charge.disputed is True
    assert refund_error.value.code == "charge_disputed"
    helpers.flush()
    assert receiver.types()[-4:] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]


def test_disputes_are_listed_by_charge(client: stripe.StripeClient, helpers: Helpers) -> None:
    _session, intent = paid_payment(client, helpers)
    opened = helpers.post("/disputes", {"charge": intent.latest_charge, "amount": 100})

    listed = client.v1.disputes.list(params={"charge": intent.latest_charge})

    assert [d.id for d in listed.data] == [opened["id"]]
    assert listed.data[0].amount == 100
