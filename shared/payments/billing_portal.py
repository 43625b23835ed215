"""Stripe's hosted Billing Portal for a member: card updates and invoice history.

Stripe already does both well, and a member whose renewal failed needs exactly that. The
portal opens for one of the member's own Stripe customers only (from our tables, never a
customer id from the request): the customer of their live subscription, whose card and invoices
a renewal uses, else their mapped customer. They differ when a first-time member's checkouts
were in flight together (each created a customer), and then the subscription's is the one that
matters. It returns to the member's account page on the site.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from payments import errors
from payments.adapters.store import Store
from payments.auth import Member
from payments.checkout import request_scope
from payments.models import STRIPE_CUSTOMER_MISSING

PORTAL_FAILED = "The payment portal could not be opened. Please retry in a moment."


class NoCustomerYet(errors.Conflict):
    code = "no_customer"
    default_message = (
        "There is no payment method or invoice to show yet: they appear after your first payment."
    )


class PortalGateway(Protocol):
    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str
    ) -> str: ...


class BillingPortalSession(BaseModel):
    url: str


@dataclass(frozen=True)
class PortalDeps:
    store: Store
    stripe: PortalGateway
    return_url: str


def account_url(account: str | None, checkout_success_url: str) -> str:
    """The page the portal returns to: ``ACCOUNT_URL``, else the account page beside the F5
    page (same origin and folder, ``account``; ``account.html`` when the F5 page is a file)."""
    if account:
        return account
    parts = urlsplit(checkout_success_url)
    folder, _, last = parts.path.rpartition("/")
    name = "account.html" if last.endswith(".html") else "account"
    return urlunsplit((parts.scheme, parts.netloc, f"{folder}/{name}", "", ""))


def portal_idempotency_key(
    member_id: str, customer_id: str, return_url: str, client_key: str | None, now: float
) -> str:
    """Same member, customer, return page and click -> the same portal session."""
    scope = request_scope(client_key, now)
    material = f"{member_id}\n{customer_id}\n{return_url}\n{scope}"
    return f"portal-{hashlib.sha256(material.encode()).hexdigest()[:48]}"


def open_billing_portal(
    deps: PortalDeps, member: Member, *, client_key: str | None, now: float
) -> BillingPortalSession:
    """A portal session for the member's Stripe customer (their live subscription's, else the
    mapped one), or ``NoCustomerYet`` (409)."""
    stored = deps.store.call("billing_portal_customer", p_member_id=member.id)
    if not stored:
        raise NoCustomerYet()
    customer_id = str(stored)
    try:
        url = deps.stripe.create_billing_portal_session(
            customer_id=customer_id,
            return_url=deps.return_url,
            idempotency_key=portal_idempotency_key(
                member.id, customer_id, deps.return_url, client_key, now
            ),
        )
    except errors.NotFound as exc:
        if exc.code != STRIPE_CUSTOMER_MISSING:
            raise
        # Deleted in Stripe: there are no invoices or cards to show; the next checkout
        # replaces the customer.
        raise NoCustomerYet() from exc
    except (errors.UpstreamError, errors.UpstreamUnavailable) as exc:
        # The adapter's wording is about starting a payment; say what failed here.
        raise type(exc)(PORTAL_FAILED, code=exc.code) from exc
    return BillingPortalSession(url=url)
