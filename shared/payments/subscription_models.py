"""Value types of subscription management (no vendor imports here).

``StripeSubscription`` and ``InvoicePreview`` are what the Stripe adapter reads back; the
pydantic models are the bodies the subscriptions API answers with (and documents in OpenAPI).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field

from payments.schema import Model

ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]
PauseBehavior = Literal["keep_as_draft", "mark_uncollectible", "void"]
# The only pause a member may ask for (docs/subscriptions.md): the periods it covers are not
# billed (Stripe voids their invoices) and not served; the other two bill nothing either while
# the plan would stay on, which is service for free.
MEMBER_PAUSE_BEHAVIOR: PauseBehavior = "void"
# Invoice statuses of a period that was not paid for and never will be by itself.
UNPAID_INVOICE_STATUSES = ("void", "uncollectible", "draft")

# Stripe statuses in which a member still holds (or owes for) the plan.
LIVE_STATUSES = ("active", "trialing", "past_due", "paused")
ENDED_STATUSES = ("canceled", "incomplete_expired")


@dataclass(frozen=True)
class StripeSubscription:
    """The fields of a Stripe subscription the service acts on (single-item subscriptions)."""

    id: str
    customer: str
    status: str
    item_id: str | None
    price_id: str | None
    price_lookup_key: str | None
    current_period_start: int | None
    current_period_end: int | None
    cancel_at_period_end: bool
    pause_behavior: str | None
    resumes_at: int | None
    # The member our checkout named in the subscription's metadata (None outside our checkout).
    member_id: str | None = None
    # Status of the subscription's latest invoice, when the adapter expanded it.
    latest_invoice_status: str | None = None

    @property
    def is_ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def is_paused(self) -> bool:
        """Collection paused by us (``pause_collection``) or the subscription itself paused."""
        return self.pause_behavior is not None or self.status == "paused"

    @property
    def current_period_unpaid(self) -> bool:
        """The period running now was invoiced while collection was paused (voided, marked
        uncollectible or left a draft): resuming must bill it, or it is served for free."""
        return self.latest_invoice_status in UNPAID_INVOICE_STATUSES


@dataclass(frozen=True)
class PreviewLine:
    description: str
    amount: int
    proration: bool


@dataclass(frozen=True)
class InvoicePreview:
    """An invoice Stripe computed without creating it (``invoices.create_preview``)."""

    currency: str
    total: int
    amount_due: int
    ending_balance: int
    lines: tuple[PreviewLine, ...]


# --- response bodies ------------------------------------------------------------------------


class SubscriptionView(Model):
    """A subscription as the member sees it."""

    id: str
    product: str | None
    status: str
    paused: bool
    pause_behavior: str | None = None
    resumes_at: datetime | None = None
    cancel_at_period_end: bool
    current_period_end: datetime | None = None


class ChangeResult(SubscriptionView):
    proration_behavior: ProrationBehavior
    proration_date: int


class PreviewLineOut(Model):
    description: str
    amount: int
    proration: bool


class ChangePreview(Model):
    """What a plan change costs, as Stripe computes it for ``proration_date``."""

    subscription: str
    product: str
    proration_behavior: ProrationBehavior = Field(description="Decided by the service")
    proration_date: int
    amount_due_now: int
    next_renewal_amount: int
    proration_amount: int
    currency: str
    lines: list[PreviewLineOut]
    quote: str = Field(
        description="Opaque and signed: send it back to /change to be billed exactly this"
    )
    quote_expires_at: datetime = Field(description="After this, preview again")


class MemberSubscriptions(Model):
    subscriptions: list[SubscriptionView]
