"""Stripe's hosted Billing Portal for a member: card updates and invoice history.

Stripe already does both well, and a member whose renewal failed needs exactly that. The
portal opens for one of the member's own Stripe customers only (from our tables, never a
customer id from the request): the customer of their live subscription, whose card and invoices
a renewal uses, else their mapped customer. They differ when a first-time member's checkouts
were in flight together (each created a customer), and then the subscription's is the one that
matters. It returns to the member's account page on the site.

Every session names the service's own portal configuration (created by ``tools.seed_stripe``,
found by its metadata), never the account's default: the default is edited in the Dashboard,
and with "switch plan", quantity changes or cancellation turned on there, members would change
what they pay at the portal's own proration, outside the quotes this service prices
(docs/reliability.md, I6). A configuration that allows anything beyond card updates and invoice
history is not used: the portal stays closed (503) and an alert says how to fix it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from payments import errors
from payments.adapters.store import Store
from payments.auth import Member
from payments.checkout import request_scope
from payments.models import STRIPE_CUSTOMER_MISSING
from payments.observability import alert
from payments.schema import Model

PORTAL_FAILED = "The payment portal could not be opened. Please retry in a moment."
PORTAL_NOT_SET_UP = "The payment portal is not available right now. Please try again later."

# The metadata that marks the service's own portal configuration in a Stripe account.
CONFIGURATION_METADATA_KEY = "payments_service"
CONFIGURATION_METADATA_VALUE = "billing_portal"
# What a member may do in the portal. Everything else (subscription update, cancel and pause,
# customer details, which belong to Memberstack) is the service's to do, or nobody's.
ALLOWED_FEATURES = frozenset({"payment_method_update", "invoice_history"})
SEED_FIX = "run python -m tools.seed_stripe with this key (docs/deploy.md, 'Stripe')"


class NoCustomerYet(errors.Conflict):
    code = "no_customer"
    default_message = (
        "There is no payment method or invoice to show yet: they appear after your first payment."
    )


@dataclass(frozen=True)
class PortalConfiguration:
    """What matters of a Stripe ``billing_portal.configuration``: whose it is, whether it can
    be used, and which features it turns on."""

    id: str
    active: bool
    enabled_features: frozenset[str]
    metadata: Mapping[str, str]

    @classmethod
    def from_stripe(cls, data: Mapping[str, Any]) -> PortalConfiguration:
        """From the configuration's JSON, as Stripe answers it."""
        features = data.get("features") or {}
        enabled = frozenset(
            name
            for name, feature in features.items()
            if isinstance(feature, Mapping) and feature.get("enabled")
        )
        metadata = data.get("metadata") or {}
        return cls(
            id=str(data["id"]),
            active=bool(data.get("active")),
            enabled_features=enabled,
            metadata={str(k): str(v) for k, v in metadata.items()},
        )

    @property
    def is_ours(self) -> bool:
        return self.metadata.get(CONFIGURATION_METADATA_KEY) == CONFIGURATION_METADATA_VALUE

    @property
    def forbidden_features(self) -> frozenset[str]:
        """Features on that would let a member act outside the service's flows."""
        return self.enabled_features - ALLOWED_FEATURES

    @property
    def missing_features(self) -> frozenset[str]:
        """Allowed features that are off: the portal would not serve its purpose."""
        return ALLOWED_FEATURES - self.enabled_features

    @property
    def usable(self) -> bool:
        return self.is_ours and self.active and not self.forbidden_features


def choose_configuration(
    configurations: Iterable[PortalConfiguration],
) -> PortalConfiguration | None:
    """The service's configuration to open sessions with: the first (Stripe lists newest
    first) that is ours, active and allows nothing beyond ``ALLOWED_FEATURES``."""
    return next((c for c in configurations if c.usable), None)


class PortalGateway(Protocol):
    def portal_configurations(self) -> list[dict[str, Any]]:
        """The account's active portal configurations as Stripe's JSON, newest first."""
        ...

    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, configuration_id: str, idempotency_key: str
    ) -> str: ...


# How long a container trusts the configuration it checked: one edited in the Dashboard to
# allow more (a plan switch) closes the portal within this time, not only on a cold start.
CONFIGURATION_TTL_SECONDS = 300.0


@dataclass
class ConfigurationCache:
    """The configuration id, checked on the first portal click of a container and again once
    ``CONFIGURATION_TTL_SECONDS`` have passed (one Stripe list call each time). Only a usable
    configuration is kept, so a container that found none finds the one seeded later without
    a restart."""

    configuration_id: str | None = None
    checked_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic

    def get(self, gateway: PortalGateway) -> str:
        with self.lock:
            now = self.clock()
            if self.configuration_id is None or now - self.checked_at >= CONFIGURATION_TTL_SECONDS:
                self.configuration_id = None  # stays unset if the check refuses it
                self.configuration_id = _find_configuration(gateway)
                self.checked_at = now
            return self.configuration_id

    def forget(self) -> None:
        with self.lock:
            self.configuration_id = None


def _find_configuration(gateway: PortalGateway) -> str:
    configurations = [PortalConfiguration.from_stripe(c) for c in gateway.portal_configurations()]
    chosen = choose_configuration(configurations)
    if chosen is not None:
        return chosen.id
    ours = [c for c in configurations if c.is_ours]
    problem = (
        "the service's portal configuration allows " + ", ".join(sorted(ours[0].forbidden_features))
        if ours
        else "the Stripe account has no active portal configuration of the service"
    )
    # Never the account's default instead: it may allow plan changes the service did not price.
    alert("billing portal closed: " + problem, fix=SEED_FIX)
    raise errors.UpstreamUnavailable(PORTAL_NOT_SET_UP, code="portal_unavailable")


class BillingPortalSession(Model):
    url: str


@dataclass(frozen=True)
class PortalDeps:
    store: Store
    stripe: PortalGateway
    return_url: str
    configuration: ConfigurationCache = field(default_factory=ConfigurationCache)


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
    member_id: str,
    customer_id: str,
    return_url: str,
    configuration_id: str,
    client_key: str | None,
    now: float,
) -> str:
    """Same member, customer, return page, configuration and click -> the same session."""
    scope = request_scope(client_key, now)
    material = f"{member_id}\n{customer_id}\n{return_url}\n{configuration_id}\n{scope}"
    return f"portal-{hashlib.sha256(material.encode()).hexdigest()[:48]}"


def open_billing_portal(
    deps: PortalDeps, member: Member, *, client_key: str | None, now: float
) -> BillingPortalSession:
    """A portal session for the member's Stripe customer (their live subscription's, else the
    mapped one), with the service's configuration; ``NoCustomerYet`` (409), or
    ``portal_unavailable`` (503) while no usable configuration exists."""
    stored = deps.store.call("billing_portal_customer", p_member_id=member.id)
    if not stored:
        raise NoCustomerYet()
    customer_id = str(stored)
    configuration_id = deps.configuration.get(deps.stripe)
    try:
        url = deps.stripe.create_billing_portal_session(
            customer_id=customer_id,
            return_url=deps.return_url,
            configuration_id=configuration_id,
            idempotency_key=portal_idempotency_key(
                member.id, customer_id, deps.return_url, configuration_id, client_key, now
            ),
        )
    except errors.NotFound as exc:
        if exc.code != STRIPE_CUSTOMER_MISSING:
            deps.configuration.forget()
            raise
        # Deleted in Stripe: there are no invoices or cards to show; the next checkout
        # replaces the customer.
        raise NoCustomerYet() from exc
    except (errors.UpstreamError, errors.UpstreamUnavailable) as exc:
        # A configuration deactivated since it was found is refused by Stripe: look it up
        # again on the next click (one list call) rather than failing until a restart.
        deps.configuration.forget()
        # The adapter's wording is about starting a payment; say what failed here.
        raise type(exc)(PORTAL_FAILED, code=exc.code) from exc
    return BillingPortalSession(url=url)
