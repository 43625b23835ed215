"""The Make.com documents: what docs/make.md shows is what the service sends."""

from __future__ import annotations

import json
import re

import pytest

from payments.dispatches import MAKE_KINDS, AddProject, PaymentFailed, make_payload
from tools.db import ROOT

pytestmark = pytest.mark.unit

DOC = (ROOT / "docs" / "make.md").read_text()
MODELS = {"add_project": AddProject, "payment_failed": PaymentFailed}


def _examples() -> list[dict[str, object]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC, re.S)]


def test_every_kind_the_service_sends_is_documented_with_an_example() -> None:
    documented = {example["kind"] for example in _examples()}
    assert documented == set(MAKE_KINDS)
    for kind in MAKE_KINDS:
        assert f"### `{kind}`" in DOC


@pytest.mark.parametrize("example", _examples(), ids=lambda e: str(e["kind"]))
def test_each_documented_example_is_exactly_a_document_of_its_kind(
    example: dict[str, object],
) -> None:
    model = MODELS[str(example["kind"])]
    # Every field documented, none missing: the models forbid extra fields.
    assert model.model_validate(example).model_dump(mode="json") == example
    for field in model.model_fields:
        assert f"| `{field}` |" in DOC


def test_a_subscription_add_project_names_the_plan_and_its_interval() -> None:
    body = make_payload(
        "add_project",
        "add_project:cs_1",
        {
            "member_id": "mem_1",
            "product": "growth_monthly",
            "mode": "subscription",
            "amount": 2900,
            "currency": "usd",
            "checkout_session_id": "cs_1",
            "subscription": "sub_1",
        },
    )
    assert (body["kind"], body["interval"], body["product_name"]) == (
        "add_project",
        "month",
        "Growth Plan (monthly)",
    )
    assert body["payment_intent"] is None


def test_a_payment_failed_document_carries_the_attempt_and_the_next_one() -> None:
    body = make_payload(
        "payment_failed",
        "payment_failed:in_1:2",
        {
            "member_id": "mem_1",
            "product": "scale_monthly",
            "subscription": "sub_1",
            "invoice": "in_1",
            "amount_due": 7900,
            "currency": "usd",
            "attempt_count": 2,
            "next_payment_attempt": "2026-12-04T11:40:50+00:00",
        },
    )
    assert body["attempt_count"] == 2
    assert body["plan_name"] == "Scale Plan (monthly)"
    assert body["next_payment_attempt"].startswith("2026-12-04T11:40:50")
