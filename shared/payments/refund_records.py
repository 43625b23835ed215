"""What a refund looks like from outside: the records the refund routes and the admin payment
search answer with, apart from the refund logic (which needs the checkout), so that reading a
refund history does not import what making one needs."""

from __future__ import annotations

from datetime import datetime

from payments.schema import Model

PAYMENT_INTENT_PATTERN = r"^pi_[A-Za-z0-9_]{1,200}$"
# A reservation whose Stripe call has not been confirmed for this long belongs to an
# invocation that died; it stops blocking the amount (Stripe's own figures still count).
RESERVATION_TTL_SECONDS = 600


class RefundOut(Model):
    id: str
    status: str
    amount: int
    currency: str
    payment_intent: str


class RefundRecord(RefundOut):
    reason: str | None = None
    note: str | None = None
    requested_by: str | None = None
    created_at: datetime
