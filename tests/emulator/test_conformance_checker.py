"""The conformance checker: Stripe's examples (brought to the pinned version) pass it, and each
kind of drift the emulator once had is reported, so the run in test_conformance.py can fail."""

from __future__ import annotations

from typing import Any

import pytest

from tools.stripe_emulator.conformance import Conformance, stripe_python_event_types
from tools.stripe_emulator.objects import API_VERSION, apply_overlay, fixture

pytestmark = pytest.mark.unit

# Every example object the emulator builds its objects from.
USED_FIXTURES = [
    "balance_transaction",
    "billing_portal.configuration",
    "charge",
    "checkout.session",
    "customer",
    "dispute",
    "invoice",
    "invoice_payment",
    "invoiceitem",
    "item",
    "line_item",
    "payment_intent",
    "payment_method",
    "price",
    "product",
    "refund",
    "subscription",
    "subscription_item",
]


@pytest.fixture(scope="module")
def check() -> Conformance:
    return Conformance()


def _event(event_type: str, obj: dict[str, Any], **data: Any) -> dict[str, Any]:
    envelope = fixture("event")
    envelope.update(type=event_type, api_version=API_VERSION, data={"object": obj, **data})
    return envelope


@pytest.mark.parametrize("name", USED_FIXTURES)
def test_stripes_examples_brought_to_the_pinned_version_conform(
    check: Conformance, name: str
) -> None:
    assert check.check_object(fixture(name)) == []


def test_a_missing_required_field_is_reported(check: Conformance) -> None:
    session = fixture("checkout.session")
    del session["allowed_payment_method_types"]

    assert check.check_object(session) == ["allowed_payment_method_types: required field missing"]


def test_a_field_the_type_does_not_declare_is_reported(check: Conformance) -> None:
    refund = {**fixture("refund"), "livemode": False}
    invoice = {**fixture("invoice"), "subscription": "sub_123"}

    assert check.check_object(refund) == ["livemode: not a field of this type"]
    assert check.check_object(invoice) == ["subscription: not a field of this type"]


def test_null_where_the_type_allows_none_is_reported(check: Conformance) -> None:
    session = {**fixture("checkout.session"), "return_url": None}

    [found] = check.check_object(session)

    assert found.startswith("return_url: None is not of type 'string'")


def test_a_value_outside_the_enum_is_reported(check: Conformance) -> None:
    charge = {**fixture("charge"), "status": "done"}

    assert check.check_object(charge) == [
        "status: 'done' is not one of ['failed', 'pending', 'succeeded']"
    ]


def test_charge_refunds_are_accepted_only_when_expanded(check: Conformance) -> None:
    charge = fixture("charge")
    charge["refunds"] = {"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"}

    assert check.check_object(charge) == ["refunds: only included with expand[]=refunds"]
    assert check.check_object(charge, expand=["refunds"]) == []
    assert check.check_event(_event("charge.refunded", charge)) == [
        "data.object.refunds: only included with expand[]=refunds"
    ]


def test_an_event_type_stripe_does_not_have_is_reported(check: Conformance) -> None:
    intent = fixture("payment_intent")

    found = check.check_event(_event("payment_intent.updated", intent))

    assert "payment_intent.updated" not in stripe_python_event_types()
    assert found[0] == "type 'payment_intent.updated' is not an event type of stripe-python"


def test_an_event_carrying_the_wrong_object_is_reported(check: Conformance) -> None:
    found = check.check_event(_event("charge.refunded", fixture("refund")))

    assert "data.object.object: 'refund' is not one of ['charge']" in found


def test_previous_attributes_may_say_a_field_was_absent_but_not_null_a_required_one(
    check: Conformance,
) -> None:
    refund = {**fixture("refund"), "status": "failed", "failure_reason": "lost_or_stolen_card"}
    was_absent = _event(
        "refund.updated", refund, previous_attributes={"failure_reason": None, "status": "pending"}
    )
    was_null = _event("refund.updated", refund, previous_attributes={"amount": None})

    assert check.check_event(was_absent) == []
    assert check.check_event(was_null) == [
        "data.previous_attributes.amount: None is not of type 'number'"
    ]


def test_list_items_are_checked_against_their_own_definitions(check: Conformance) -> None:
    refund = {**fixture("refund"), "livemode": False}
    page = {"object": "list", "data": [fixture("refund"), refund], "has_more": False, "url": "/"}

    assert check.check_object(page) == ["data.1.livemode: not a field of this type"]


def test_an_overlay_path_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(KeyError):
        apply_overlay({"a": {}}, {"set": {"b.c": 1}})
