"""Set up a Stripe account for the service, idempotently: catalog prices, the Billing Portal's
configuration and the webhook endpoint.

    python -m tools.seed_stripe                       # prices and portal, with STRIPE_SECRET_KEY
    python -m tools.seed_stripe --webhook-url https://<api>/v1/webhooks/stripe
    python -m tools.seed_stripe --webhook-url … --dry-run   # show what would change

Each catalog product becomes a Stripe product with the same id, and a price carrying the
product's ``lookup_key``. A price whose amount, currency or interval drifted is replaced: a new
price takes over the lookup key (``transfer_lookup_key``) and the old one is deactivated, so
checkout never sells at a price the website does not show.

The account gets one portal configuration of the service's (marked by its metadata, which is how
the subscriptions function finds it): card updates and invoice history, nothing else. Plan
changes, quantities, cancellation and pausing stay off, so the portal can never bill a change
the service did not price; customer details stay off, as members change them in Memberstack. A
configuration of ours that drifted (edited through the API) or was deactivated is put back.

With ``--webhook-url``, the account gets one enabled endpoint for that URL sending exactly the
event types the worker handles (``payments.webhooks.handled_event_types``), on the API version
the service is written against. A new endpoint's signing secret is printed once: Stripe never
shows it again through the API (the Dashboard can reveal it). Re-running changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any, cast

import stripe

from payments.billing_portal import (
    CONFIGURATION_METADATA_KEY,
    CONFIGURATION_METADATA_VALUE,
    PortalConfiguration,
)
from payments.catalog import Product, load_catalog
from payments.webhooks import handled_event_types

ENDPOINT_DESCRIPTION = "Payments service (tools.seed_stripe)"


def stripe_client(api_key: str, api_base: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key, base_addresses={"api": api_base} if api_base else {}, max_network_retries=2
    )


def _matches(price: stripe.Price, product: Product) -> bool:
    interval = price.recurring.interval if price.recurring else None
    return (
        price.active
        and price.unit_amount == product.amount
        and price.currency == product.currency
        and interval == product.interval
    )


def seed_catalog(
    api_key: str, api_base: str | None = None, *, dry_run: bool = False, quiet: bool = False
) -> list[str]:
    """Bring Stripe in line with the catalog; return what changed."""
    client = stripe_client(api_key, api_base)
    changes: list[str] = []
    catalog = load_catalog()
    existing = {
        price.lookup_key: price
        for price in client.v1.prices.list(
            params={"lookup_keys": [p.lookup_key for p in catalog.products], "limit": 100}
        ).data
    }
    for product in catalog.products:
        price = existing.get(product.lookup_key)
        if price is not None and _matches(price, product):
            continue
        changes.append(
            f"{product.id}: {'replace' if price else 'create'} price {product.lookup_key}"
        )
        if dry_run:
            continue
        try:
            client.v1.products.retrieve(product.id)
        except stripe.InvalidRequestError:
            client.v1.products.create(
                params={"id": product.id, "name": product.name, "description": product.description},
                options={"idempotency_key": f"seed-product-{product.id}"},
            )
        params: stripe.params.PriceCreateParams = {
            "product": product.id,
            "unit_amount": product.amount,
            "currency": product.currency,
            "lookup_key": product.lookup_key,
            "transfer_lookup_key": True,
        }
        if product.interval:
            params["recurring"] = {"interval": product.interval}
        # Re-runs are made idempotent by the lookup above; the keys make a retried request
        # of this run create (or deactivate) once.
        run = uuid.uuid4()
        client.v1.prices.create(
            params=params, options={"idempotency_key": f"seed-price-{product.lookup_key}-{run}"}
        )
        if price is not None:
            client.v1.prices.update(
                price.id,
                params={"active": False},
                options={"idempotency_key": f"seed-price-deactivate-{price.id}-{run}"},
            )
    if not quiet:
        print("\n".join(changes) if changes else "Stripe already matches the catalog.")
    return changes


# The Billing Portal's configuration: what a member may do there (payments.billing_portal
# decides what is allowed; this is how it is asked of Stripe).
PORTAL_FEATURES: stripe.params.billing_portal.ConfigurationCreateParamsFeatures = {
    "payment_method_update": {"enabled": True},
    "invoice_history": {"enabled": True},
    "customer_update": {"enabled": False},
    "subscription_update": {"enabled": False},
    "subscription_cancel": {"enabled": False},
    "subscription_pause": {"enabled": False},
}
PORTAL_NAME = "Payments service: card and invoices"


@dataclass(frozen=True)
class PortalResult:
    """What ``ensure_portal_configuration`` did: ``created``, ``updated`` or ``unchanged``."""

    action: str
    configuration_id: str | None


def _our_configurations(client: stripe.StripeClient) -> list[stripe.billing_portal.Configuration]:
    listed = client.v1.billing_portal.configurations.list(params={"limit": 100})
    return [
        config
        for config in listed.auto_paging_iter()
        if PortalConfiguration.from_stripe(config.to_dict(recursive=True)).is_ours
    ]


def ensure_portal_configuration(
    api_key: str, api_base: str | None = None, *, dry_run: bool = False
) -> PortalResult:
    """One active portal configuration of the service's, allowing exactly ``PORTAL_FEATURES``."""
    client = stripe_client(api_key, api_base)
    found = _our_configurations(client)
    metadata = {CONFIGURATION_METADATA_KEY: CONFIGURATION_METADATA_VALUE}
    if not found:
        if dry_run:
            return PortalResult("created", None)
        created = client.v1.billing_portal.configurations.create(
            params={"features": PORTAL_FEATURES, "metadata": metadata, "name": PORTAL_NAME},
            # Re-runs are made idempotent by the lookup above; this key makes a retried
            # request of this run create one configuration, not two.
            options={"idempotency_key": f"seed-portal-configuration-{uuid.uuid4()}"},
        )
        return PortalResult("created", created.id)
    # Newest first, as Stripe lists: the one the subscriptions function would pick.
    config = next((c for c in found if c.active), found[0])
    current = PortalConfiguration.from_stripe(config.to_dict(recursive=True))
    if current.usable and not current.missing_features:
        return PortalResult("unchanged", config.id)
    if not dry_run:
        # The same features, under the update call's own parameter types.
        repair: stripe.params.billing_portal.ConfigurationUpdateParams = {
            "active": True,
            "features": cast(Any, PORTAL_FEATURES),
        }
        client.v1.billing_portal.configurations.update(
            config.id,
            params=repair,
            options={"idempotency_key": f"seed-portal-configuration-{config.id}-{uuid.uuid4()}"},
        )
    return PortalResult("updated", config.id)


def _report_portal(result: PortalResult, *, dry_run: bool) -> None:
    which = f" {result.configuration_id}" if result.configuration_id else ""
    if result.action == "unchanged":
        print(f"billing portal configuration{which} already allows card and invoices only")
    elif dry_run:
        verb = {"created": "create", "updated": "update"}[result.action]
        print(f"billing portal configuration: would {verb}{which}")
    else:
        print(f"billing portal configuration{which} {result.action}: card and invoices only")


def seed_account(api_key: str, api_base: str | None = None, *, quiet: bool = False) -> None:
    """Everything the service needs of a Stripe account but the webhook endpoint (whose URL
    only a deployment knows): the catalog prices and the portal configuration."""
    seed_catalog(api_key, api_base, quiet=quiet)
    result = ensure_portal_configuration(api_key, api_base)
    if not quiet:
        _report_portal(result, dry_run=False)


@dataclass(frozen=True)
class EndpointResult:
    """What ``ensure_webhook_endpoint`` did: ``created``, ``updated`` or ``unchanged``."""

    action: str
    endpoint_id: str | None
    # Only when the endpoint was created now: Stripe shows it in this one answer.
    secret: str | None = None
    notes: tuple[str, ...] = ()


def _endpoints_for(client: stripe.StripeClient, url: str) -> list[stripe.WebhookEndpoint]:
    listed = client.v1.webhook_endpoints.list(params={"limit": 100})
    return [endpoint for endpoint in listed.auto_paging_iter() if endpoint.url == url]


def ensure_webhook_endpoint(
    api_key: str, url: str, api_base: str | None = None, *, dry_run: bool = False
) -> EndpointResult:
    """One enabled endpoint for ``url`` with exactly the handled event types."""
    client = stripe_client(api_key, api_base)
    # Typed as Stripe's list of event names; ours are checked against it by the API.
    wanted: Any = list(handled_event_types())
    found = _endpoints_for(client, url)
    if not found:
        if dry_run:
            return EndpointResult("created", None, notes=(f"would send {len(wanted)} events",))
        created = client.v1.webhook_endpoints.create(
            params={
                "url": url,
                "enabled_events": wanted,
                "api_version": cast(Any, stripe.api_version),
                "description": ENDPOINT_DESCRIPTION,
            },
            # Re-runs are made idempotent by the lookup above; this key makes a retried
            # request of this run create one endpoint, not two.
            options={"idempotency_key": f"seed-webhook-endpoint-{uuid.uuid4()}"},
        )
        return EndpointResult("created", created.id, secret=created.secret)
    endpoint, *duplicates = found
    notes = [
        f"another endpoint {other.id} has the same URL: delete it in the Stripe Dashboard "
        "(each endpoint signs with its own secret, so only one can match the service's)"
        for other in duplicates
    ]
    if endpoint.api_version and endpoint.api_version != stripe.api_version:
        notes.append(
            f"endpoint {endpoint.id} sends API version {endpoint.api_version}, the service is "
            f"written for {stripe.api_version}: delete it and run this again"
        )
    if sorted(endpoint.enabled_events) == sorted(wanted) and endpoint.status == "enabled":
        return EndpointResult("unchanged", endpoint.id, notes=tuple(notes))
    if not dry_run:
        client.v1.webhook_endpoints.update(
            endpoint.id,
            params={"enabled_events": wanted, "disabled": False},
            options={"idempotency_key": f"seed-webhook-endpoint-{endpoint.id}-{uuid.uuid4()}"},
        )
    return EndpointResult("updated", endpoint.id, notes=tuple(notes))


def _report_endpoint(result: EndpointResult, url: str, *, dry_run: bool) -> None:
    verb = {"created": "create", "updated": "update"}.get(result.action)
    if dry_run and verb:
        which = f" {result.endpoint_id}" if result.endpoint_id else ""
        print(f"webhook endpoint: would {verb}{which} for {url}")
    elif result.action == "unchanged":
        print(f"webhook endpoint {result.endpoint_id} already sends every handled event")
    else:
        print(f"webhook endpoint {result.endpoint_id} {result.action} for {url}")
    for note in result.notes:
        print(f"  note: {note}")
    if result.secret:
        print(
            "\nSigning secret of the new endpoint (shown once; Stripe will not show it through "
            f"the API again):\n\n    {result.secret}\n\nSet it as the stack's StripeWebhookSecret "
            "parameter (docs/deploy.md, 'Stripe webhook')."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    parser.add_argument(
        "--webhook-url", help="also set up the webhook endpoint: <ApiUrl>/v1/webhooks/stripe"
    )
    args = parser.parse_args(argv)
    key = os.environ.get("STRIPE_SECRET_KEY")
    if not key:
        print("STRIPE_SECRET_KEY is not set", file=sys.stderr)
        return 2
    api_base = os.environ.get("STRIPE_API_BASE")
    seed_catalog(key, api_base, dry_run=args.dry_run)
    _report_portal(
        ensure_portal_configuration(key, api_base, dry_run=args.dry_run), dry_run=args.dry_run
    )
    if args.webhook_url:
        result = ensure_webhook_endpoint(key, args.webhook_url, api_base, dry_run=args.dry_run)
        _report_endpoint(result, args.webhook_url, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
