"""Value types shared by the domain and the adapters (no vendor imports here)."""

from __future__ import annotations

from dataclasses import dataclass

# The code of the NotFound an adapter raises when Stripe no longer knows our stored customer.
STRIPE_CUSTOMER_MISSING = "stripe_customer_missing"


@dataclass(frozen=True)
class StripePrice:
    id: str
    lookup_key: str | None
    unit_amount: int | None
    currency: str
    interval: str | None
    active: bool


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    expires_at: int | None = None


@dataclass(frozen=True)
class PaymentSnapshot:
    """A payment intent and its latest charge as Stripe sees them now."""

    id: str
    status: str
    amount: int
    amount_refunded: int
    currency: str
    disputed: bool
    member_id: str | None


@dataclass(frozen=True)
class IssuedRefund:
    """A refund Stripe accepted."""

    id: str
    payment_intent: str
    amount: int
    currency: str
    status: str
