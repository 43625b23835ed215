"""What we hold about a member: their payment history, an export of it all, and its erasure.

Reads run as the member (``Store.call_as_member``) so row-level security, not a filter in our
code, keeps other members' rows out. Erasure is one SQL function (one transaction): rows that
accounting needs keep their amounts under a stable pseudonym, the rest is deleted. Stripe's own
records are never touched here.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from payments import errors
from payments.adapters.store import Store
from payments.catalog import format_amount
from payments.observability import logger
from payments.schema import Model

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 50
_CURSOR_PREFIX = "v1:"
MAX_CURSOR_LENGTH = 64


class PaymentEntry(Model):
    """One line of a member's payment history."""

    id: int
    created_at: datetime
    event_type: str
    amount: int | None = Field(default=None, description="In the currency's smallest unit.")
    currency: str | None = None
    display_amount: str | None = Field(default=None, examples=["$99"])
    status: str | None = None
    product: str | None = None
    stripe_object_id: str | None = None


class PaymentHistoryPage(Model):
    payments: list[PaymentEntry]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for the next (older) page; null at the end."
    )


class MemberDataExport(Model):
    """Everything the service's tables hold about one member."""

    member_id: str
    exported_at: datetime
    customer: dict[str, Any] | None
    payment_logs: list[dict[str, Any]]
    purchases: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    subscription_invoices: list[dict[str, Any]] = Field(
        default_factory=list, description="Every invoice of the member's plans: paid or failed."
    )
    refunds: list[dict[str, Any]]


class ErasureReceipt(Model):
    pseudonym: str = Field(description="What the kept accounting rows now carry instead of the id.")
    erased_at: datetime
    already_erased: bool
    rows: dict[str, int] = Field(description="Rows anonymised or deleted, per table.")


# Why an erasure must wait, as (error code, what the member reads).
ERASURE_WAITS: dict[str, tuple[str, str]] = {
    "subscription_active": (
        "subscription_active",
        "Cancel your subscription first; your data can be erased once it has ended.",
    ),
    "purchase_open": (
        "erasure_pending",
        "A checkout you started is still open or a payment is still being confirmed. "
        "Your data can be erased once it is finished (an unpaid checkout closes within 24 hours).",
    ),
    "refund_pending": (
        "erasure_pending",
        "A refund to you is still on its way. Your data can be erased once it has arrived.",
    ),
    "dispatch_pending": (
        "erasure_pending",
        "We are still completing an order of yours. Your data can be erased once it is done; "
        "please try again in a few minutes.",
    ),
}


def encode_cursor(last_id: int) -> str:
    """An opaque cursor: clients pass it back, they do not read it."""
    raw = f"{_CURSOR_PREFIX}{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor stands for, or ``InvalidRequest`` for anything we did not issue."""
    invalid = errors.InvalidRequest("The cursor is not valid.", code="invalid_cursor")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    number = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not number.isdigit() or int(number) < 1:
        raise invalid
    return int(number)


def _entry(row: dict[str, Any]) -> PaymentEntry:
    amount, currency = row.get("amount"), row.get("currency")
    metadata = row.get("metadata") or {}
    product = metadata.get("product") if isinstance(metadata, dict) else None
    return PaymentEntry(
        id=row["id"],
        created_at=row["created_at"],
        event_type=row["event_type"],
        amount=amount,
        currency=currency,
        display_amount=format_amount(amount, currency) if amount is not None and currency else None,
        status=row.get("status"),
        product=product if isinstance(product, str) else None,
        stripe_object_id=row.get("stripe_object_id"),
    )


def payment_history(
    store: Store, member_id: str, *, limit: int = DEFAULT_PAGE_SIZE, cursor: str | None = None
) -> PaymentHistoryPage:
    """The member's payments, newest first, one page at a time, read under RLS as the member."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise errors.InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
    before_id = decode_cursor(cursor) if cursor is not None else None
    # One row more than asked tells whether an older page exists without a second query.
    rows: list[dict[str, Any]] = store.call_as_member(
        member_id, "member_payment_logs", p_limit=limit + 1, p_before_id=before_id
    )
    entries = [_entry(row) for row in rows[:limit]]
    next_cursor = encode_cursor(entries[-1].id) if len(rows) > limit and entries else None
    return PaymentHistoryPage(payments=entries, next_cursor=next_cursor)


def export_member_data(store: Store, member_id: str) -> MemberDataExport:
    """Everything we hold about the member, read under RLS as the member."""
    data: dict[str, Any] = store.call_as_member(member_id, "member_data_export")
    return MemberDataExport(
        member_id=member_id,
        exported_at=datetime.now(UTC),
        customer=data.get("customer"),
        payment_logs=data.get("payment_logs") or [],
        purchases=data.get("purchases") or [],
        subscriptions=data.get("subscriptions") or [],
        subscription_invoices=data.get("subscription_invoices") or [],
        refunds=data.get("refunds") or [],
    )


def erase_member_data(store: Store, member_id: str, *, requested_by: str) -> ErasureReceipt:
    """Erase the member's personal data from our tables, keeping amounts for accounting.

    Idempotent: erasing again changes nothing and says so. Refused (409) while money or work
    is still owed to or by the member: a live subscription (Stripe would keep billing a member
    we could no longer match), a checkout still open or a payment still settling, a refund not
    yet final, a dispatch not yet performed. Erasing would hide each of them from the people
    who must finish it; the member is told what to wait for.
    """
    result: dict[str, Any] = store.call(
        "erase_member_data", p_member_id=member_id, p_requested_by=requested_by
    )
    refused = result.get("refused")
    if refused is not None:
        code, message = ERASURE_WAITS.get(str(refused), ERASURE_WAITS["dispatch_pending"])
        logger.info("member data erasure must wait", extra={"reason": refused})
        raise errors.Conflict(message, code=code)
    receipt = ErasureReceipt.model_validate(result)
    # The pseudonym, never the member id: this line outlives the erasure.
    logger.info(
        "member data erased",
        extra={
            "pseudonym": receipt.pseudonym,
            "by_admin": requested_by != member_id,
            "already_erased": receipt.already_erased,
            "rows": receipt.rows,
        },
    )
    return receipt
