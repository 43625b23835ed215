"""Create or update the catalog's products and prices in a Stripe account, idempotently.

    python -m tools.seed_stripe            # uses STRIPE_SECRET_KEY (and STRIPE_API_BASE if set)
    python -m tools.seed_stripe --dry-run  # show what would change

Each catalog product becomes a Stripe product with the same id, and a price carrying the
product's ``lookup_key``. A price whose amount, currency or interval drifted is replaced: a new
price takes over the lookup key (``transfer_lookup_key``) and the old one is deactivated, so
checkout never sells at a price the website does not show. Re-running changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

import stripe

from payments.catalog import Product, load_catalog


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
    client = stripe.StripeClient(
        api_key, base_addresses={"api": api_base} if api_base else {}, max_network_retries=2
    )
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
        client.v1.prices.create(params=params)
        if price is not None:
            client.v1.prices.update(price.id, params={"active": False})
    if not quiet:
        print("\n".join(changes) if changes else "Stripe already matches the catalog.")
    return changes


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    key = os.environ.get("STRIPE_SECRET_KEY")
    if not key:
        print("STRIPE_SECRET_KEY is not set", file=sys.stderr)
        return 2
    seed_catalog(key, os.environ.get("STRIPE_API_BASE"), dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
