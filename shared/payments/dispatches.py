"""What Make.com receives: one JSON body per dispatch, told apart by ``kind``.

The outbox row (written by SQL in the same transaction as the state it follows from) holds the
facts; this module turns it into the body the scenario reads, adding what only the catalog
knows (product names, billing intervals). The models are the documentation of each kind
(docs/make.md shows an example of each, checked against them by the tests) and the scenario
can rely on every field listed here being present (``null`` where it does not apply).

Every body carries an ``idempotency_key`` that is the same for every attempt of the same
dispatch: the scenario should drop a key it has already handled (a dispatch is sent again
when Make.com answered but the answer was lost, or the database failed right after).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from payments.catalog import load_catalog
from payments.schema import Model

# Outbox kinds that go to Make.com; the others are Stripe calls (refunds, cancellations).
MAKE_KINDS = ("add_project", "payment_failed")


class AddProject(Model):
    """A paid purchase or subscription checkout: start the member's project."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["add_project"] = "add_project"
    idempotency_key: str = Field(description="Same for every attempt of this dispatch")
    member_id: str | None = Field(description="The Memberstack id of the buyer")
    product: str = Field(description="Catalog id of the product or plan")
    product_name: str | None
    mode: Literal["payment", "subscription"]
    interval: Literal["month", "year"] | None = Field(description="Billing interval of a plan")
    amount: int = Field(description="Amount paid, in the currency's smallest unit (cents)")
    currency: str
    checkout_session_id: str
    payment_intent: str | None = Field(description="One-time payments only")
    subscription: str | None = Field(description="Subscription checkouts only")


class PaymentFailed(Model):
    """A subscription renewal could not be charged: Stripe retries, the business may act."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["payment_failed"] = "payment_failed"
    idempotency_key: str
    member_id: str | None
    plan: str | None = Field(description="Catalog id of the plan")
    plan_name: str | None
    subscription: str | None
    invoice: str
    amount_due: int | None = Field(description="In the currency's smallest unit (cents)")
    currency: str | None
    attempt_count: int = Field(description="How many times Stripe has tried to charge")
    next_payment_attempt: datetime | None = Field(description="When Stripe tries again, if it does")


def _product(
    product_id: str | None,
) -> tuple[str | None, Literal["month", "year"] | None]:
    """(name, interval) of a catalog product; (None, None) for an id the catalog lacks."""
    if not product_id:
        return None, None
    for product in load_catalog().products:
        if product.id == product_id:
            return product.name, product.interval
    return None, None


def make_payload(kind: str, idempotency_key: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The body posted to Make.com for an outbox row of ``kind``."""
    if kind == "add_project":
        name, interval = _product(payload.get("product"))
        body: BaseModel = AddProject(
            idempotency_key=idempotency_key,
            member_id=payload.get("member_id"),
            product=str(payload["product"]),
            product_name=name,
            mode=payload.get("mode") or "payment",
            interval=interval,
            amount=int(payload["amount"]),
            currency=str(payload["currency"]),
            checkout_session_id=str(payload["checkout_session_id"]),
            payment_intent=payload.get("payment_intent"),
            subscription=payload.get("subscription"),
        )
    elif kind == "payment_failed":
        name, _interval = _product(payload.get("product"))
        body = PaymentFailed(
            idempotency_key=idempotency_key,
            member_id=payload.get("member_id"),
            plan=payload.get("product"),
            plan_name=name,
            subscription=payload.get("subscription"),
            invoice=str(payload["invoice"]),
            amount_due=payload.get("amount_due"),
            currency=payload.get("currency"),
            attempt_count=int(payload.get("attempt_count") or 0),
            next_payment_attempt=payload.get("next_payment_attempt"),
        )
    else:
        raise ValueError(f"not a Make.com dispatch: {kind}")
    return body.model_dump(mode="json")
