"""The product catalog: what we sell, at what price, and which Stripe price backs it.

The catalog is data (``catalog.json``) so that Webflow never hard-codes a price: the site reads
it from ``GET /v1/pricing`` and checkout refuses to sell when Stripe's price drifts from it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, computed_field

from payments.errors import InvalidRequest
from payments.schema import Model

Mode = Literal["payment", "subscription"]


class UnknownProduct(InvalidRequest):
    code = "unknown_product"


class Product(Model):
    """One sellable item. ``id`` doubles as the product track for one-time purchases."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{2,63}$")
    name: str
    description: str = ""
    amount: int = Field(gt=0, description="Price in the currency's smallest unit (cents).")
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    mode: Mode
    interval: Literal["month", "year"] | None = None
    lookup_key: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def display_price(self) -> str:
        return format_amount(self.amount, self.currency) + (
            f"/{self.interval}" if self.interval else ""
        )


class Catalog(Model):
    model_config = ConfigDict(frozen=True)

    currency: str
    products: tuple[Product, ...]

    def get(self, product_id: str, *, mode: Mode | None = None) -> Product:
        """The product with this id (and mode, when given), or ``UnknownProduct``."""
        for product in self.products:
            if product.id == product_id and (mode is None or product.mode == mode):
                return product
        valid = ", ".join(p.id for p in self.products if mode is None or p.mode == mode)
        other = next((p for p in self.products if p.id == product_id), None)
        if other is not None:
            # The right product at the wrong route: say which route sells it.
            route = (
                "POST /v1/subscriptions"
                if other.mode == "subscription"
                else "POST /v1/checkout/sessions"
            )
            raise UnknownProduct(f"{product_id} is sold by {route}. Valid products here: {valid}.")
        raise UnknownProduct(f"Unknown product. Valid products: {valid}.")

    def by_lookup_key(self, lookup_key: str) -> Product | None:
        return next((p for p in self.products if p.lookup_key == lookup_key), None)

    def public_view(self) -> dict[str, list[dict[str, object]]]:
        """The ``GET /v1/pricing`` body: no internal fields such as the Stripe lookup key."""
        return {
            "products": [
                p.model_dump(
                    include={"id", "name", "description", "amount", "currency", "mode", "interval"}
                    | {"display_price"},
                    exclude_none=True,
                )
                for p in self.products
            ]
        }


_CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def format_amount(amount: int, currency: str) -> str:
    """``9900, "usd"`` -> ``"$99"``; ``4950`` -> ``"$49.50"``. Negative amounts keep a sign."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    symbol = _CURRENCY_SYMBOLS.get(currency.lower())
    number = f"{whole:,}" if cents == 0 else f"{whole:,}.{cents:02d}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    # Beside this module, in the layer as in the repository (importlib.resources would cost
    # every cold start ten milliseconds to find the same file).
    raw = (Path(__file__).parent / "catalog.json").read_text(encoding="utf-8")
    catalog = Catalog.model_validate(json.loads(raw))
    ids = [p.id for p in catalog.products]
    if len(ids) != len(set(ids)):
        raise ValueError("catalog.json: product ids must be unique")
    return catalog
