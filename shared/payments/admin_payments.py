"""Finding payments for an admin: by member, payment intent or date range, with their refunds
and what is still refundable, newest first, one keyset page at a time.

The search is one SQL function (``admin_payments``) run as the service role: it sees every
member's payments, so the route refuses anyone who is not an admin before calling it. The
refundable figure is what our records show; ``POST /v1/refunds`` checks it again against
Stripe under a lock, so a figure that is a moment old can never refund too much.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import Field

from payments import errors
from payments.adapters.store import Store
from payments.catalog import format_amount, load_catalog
from payments.refund_records import PAYMENT_INTENT_PATTERN as PAYMENT_INTENT_PATTERN
from payments.refund_records import RESERVATION_TTL_SECONDS, RefundRecord
from payments.schema import Model

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_CURSOR_LENGTH = 96
MEMBER_ID_PATTERN = r"^[A-Za-z0-9_:\-]{1,128}$"
_CURSOR_VERSION = "p1"


class AdminRefund(RefundRecord):
    display_amount: str


class AdminPayment(Model):
    """One payment as an admin sees it."""

    payment_intent: str
    checkout_session: str
    member_id: str | None
    product: str
    product_name: str = Field(description="The catalog name, or the id of a retired product.")
    amount: int = Field(description="Paid, in the currency's smallest unit.")
    currency: str
    display_amount: str = Field(examples=["$99"])
    status: str
    amount_refunded: int = Field(description="Refunded so far, by Stripe's refund events.")
    refundable: int = Field(description="What is left to refund, by our records.")
    display_refundable: str
    switch_from: str | None = None
    created_at: datetime
    refunds: list[AdminRefund]


class AdminPaymentsPage(Model):
    payments: list[AdminPayment]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next (older) page; null at the end."
    )


@dataclass(frozen=True)
class PaymentSearch:
    """The filters of one search; ``None`` leaves a filter out. Days are UTC, both included."""

    member: str | None = None
    payment_intent: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def check(self) -> None:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise errors.Unprocessable(
                "'from' must be on or before 'to'.", code="invalid_date_range"
            )


def encode_cursor(created_at: datetime, row_id: int) -> str:
    """An opaque cursor for the page after the row ``(created_at, row_id)``."""
    raw = json.dumps([_CURSOR_VERSION, created_at.isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor stands for, or ``InvalidRequest`` for anything we did not issue."""
    invalid = errors.InvalidRequest("The cursor is not valid.", code="invalid_cursor")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        version, created, row_id = json.loads(text)
        position = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise invalid from None
    if (
        version != _CURSOR_VERSION
        or position.tzinfo is None
        or not isinstance(row_id, int)
        or isinstance(row_id, bool)
        or row_id < 1
    ):
        raise invalid
    return position, row_id


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _product_name(product_id: str) -> str:
    for product in load_catalog().products:
        if product.id == product_id:
            return product.name
    return product_id


def _payment(row: dict[str, Any]) -> AdminPayment:
    currency = str(row["currency"])
    refunds = [
        AdminRefund(**refund, display_amount=format_amount(int(refund["amount"]), currency))
        for refund in row.get("refunds") or []
    ]
    return AdminPayment(
        payment_intent=row["payment_intent"],
        checkout_session=row["checkout_session"],
        member_id=row.get("member_id"),
        product=row["product"],
        product_name=_product_name(row["product"]),
        amount=row["amount"],
        currency=currency,
        display_amount=format_amount(int(row["amount"]), currency),
        status=row["status"],
        amount_refunded=row["amount_refunded"],
        refundable=row["refundable"],
        display_refundable=format_amount(int(row["refundable"]), currency),
        switch_from=row.get("switch_from"),
        created_at=row["created_at"],
        refunds=refunds,
    )


def find_payments(
    store: Store,
    search: PaymentSearch,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> AdminPaymentsPage:
    """One page of the payments matching ``search``, newest first."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise errors.InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
    search.check()
    before = decode_cursor(cursor) if cursor is not None else None
    # One row more than asked tells whether an older page exists without a second query.
    rows: list[dict[str, Any]] = store.call(
        "admin_payments",
        p_member=search.member,
        p_payment_intent=search.payment_intent,
        p_from=_start_of(search.date_from).isoformat() if search.date_from else None,
        p_to=_start_of(search.date_to + timedelta(days=1)).isoformat() if search.date_to else None,
        p_before_created=before[0].isoformat() if before else None,
        p_before_id=before[1] if before else None,
        p_limit=limit + 1,
        p_reservation_ttl_seconds=RESERVATION_TTL_SECONDS,
    )
    shown = rows[:limit]
    next_cursor = None
    if len(rows) > limit and shown:
        last = shown[-1]
        created = last["created_at"]
        when = created if isinstance(created, datetime) else datetime.fromisoformat(created)
        next_cursor = encode_cursor(when, int(last["id"]))
    return AdminPaymentsPage(payments=[_payment(row) for row in shown], next_cursor=next_cursor)
