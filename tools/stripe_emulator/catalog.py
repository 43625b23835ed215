"""Products, prices and customers."""

from __future__ import annotations

from typing import Any

from tools.stripe_emulator import objects
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.events import changes, emit
from tools.stripe_emulator.search import search
from tools.stripe_emulator.state import Store, deep_merge_metadata, match_created, paginate

_SIMPLE_PRODUCT_FIELDS = (
    "name",
    "description",
    "active",
    "images",
    "shippable",
    "statement_descriptor",
    "unit_label",
    "url",
    "tax_code",
)
_SIMPLE_CUSTOMER_FIELDS = (
    "email",
    "name",
    "phone",
    "description",
    "address",
    "shipping",
    "preferred_locales",
)


# Products ---------------------------------------------------------------------------------


def create_product(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/products`` (with ``default_price_data``)."""
    if params.get("id") and params["id"] in store.objects:
        raise StripeError(
            f"Product already exists: {params['id']}",
            code="resource_already_exists",
            param="id",
        )
    product = store.add(objects.product(store, params))
    emit(store, "product.created", product)
    if params.get("default_price_data"):
        price = store.add(objects.price(store, params["default_price_data"], product["id"]))
        emit(store, "price.created", price)
        product["default_price"] = price["id"]
    return product


def update_product(store: Store, product_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/products/{id}``."""
    product = store.get(product_id, "product")
    before = store.snapshot(product)
    for key in _SIMPLE_PRODUCT_FIELDS:
        if key in params:
            product[key] = None if params[key] == "" else params[key]
    if "metadata" in params:
        product["metadata"] = deep_merge_metadata(product["metadata"], params["metadata"])
    if "default_price" in params:
        price = store.get(params["default_price"], "price", "default_price")
        if price["product"] != product["id"]:
            raise StripeError(
                "The default price must belong to this product.", param="default_price"
            )
        product["default_price"] = price["id"]
    product["updated"] = store.now()
    diff = changes(before, product)
    if diff:
        emit(store, "product.updated", product, diff)
    return product


def list_products(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/products``."""
    items = store.all("product")
    if "active" in params:
        items = [p for p in items if p["active"] == params["active"]]
    if "ids" in params:
        items = [p for p in items if p["id"] in set(params["ids"])]
    if "created" in params:
        items = [p for p in items if match_created(p, params["created"])]
    return paginate(items, params, "/v1/products")


def delete_product(store: Store, product_id: str) -> dict[str, Any]:
    """``DELETE /v1/products/{id}`` (refused while prices exist, as with Stripe)."""
    product = store.get(product_id, "product")
    if any(p["product"] == product_id for p in store.all("price")):
        raise StripeError(
            "This product cannot be deleted because it has one or more user-created prices."
        )
    del store.objects[product_id]
    emit(store, "product.deleted", product)
    return {"id": product_id, "object": "product", "deleted": True}


def search_products(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/products/search``."""
    fields = frozenset({"active", "name", "description", "created", "url", "shippable"})
    return search(store.all("product"), params, fields, "products", "/v1/products/search")


# Prices -----------------------------------------------------------------------------------


def _claim_lookup_key(store: Store, price: dict[str, Any], key: str, transfer: bool) -> None:
    for other in store.all("price"):
        if other["id"] != price["id"] and other.get("lookup_key") == key:
            if not transfer:
                raise StripeError(
                    f"A price (`{other['id']}`) already uses that lookup key.",
                    param="lookup_key",
                )
            before = store.snapshot(other)
            other["lookup_key"] = None
            emit(store, "price.updated", other, changes(before, other))


def create_price(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/prices`` (``product`` or ``product_data``)."""
    if params.get("product"):
        product_id = store.get(params["product"], "product", "product")["id"]
    elif params.get("product_data"):
        product = store.add(objects.product(store, dict(params["product_data"])))
        emit(store, "product.created", product)
        product_id = product["id"]
    else:
        raise StripeError(
            "Missing required param: product.", code="parameter_missing", param="product"
        )
    if params.get("unit_amount") is None and params.get("unit_amount_decimal") is None:
        raise StripeError(
            "Missing required param: unit_amount.", code="parameter_missing", param="unit_amount"
        )
    price = objects.price(store, params, product_id)
    if price["lookup_key"]:
        _claim_lookup_key(
            store, price, price["lookup_key"], params.get("transfer_lookup_key", False)
        )
    store.add(price)
    emit(store, "price.created", price)
    return price


def update_price(store: Store, price_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/prices/{id}``: ``active``, ``lookup_key`` (+ ``transfer_lookup_key``),
    ``nickname``, ``tax_behavior``, ``metadata``."""
    price = store.get(price_id, "price")
    before = store.snapshot(price)
    if "lookup_key" in params:
        key = params["lookup_key"] or None
        if key:
            _claim_lookup_key(store, price, key, params.get("transfer_lookup_key", False))
        price["lookup_key"] = key
    for field in ("active", "nickname", "tax_behavior"):
        if field in params:
            price[field] = None if params[field] == "" else params[field]
    if "metadata" in params:
        price["metadata"] = deep_merge_metadata(price["metadata"], params["metadata"])
    diff = changes(before, price)
    if diff:
        emit(store, "price.updated", price, diff)
    return price


def list_prices(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/prices`` with ``active``, ``product``, ``type``, ``currency``,
    ``lookup_keys[]``, ``recurring[interval]`` and ``created`` filters."""
    items = store.all("price")
    if "active" in params:
        items = [p for p in items if p["active"] == params["active"]]
    for field in ("product", "type", "currency"):
        if field in params:
            items = [p for p in items if p[field] == params[field]]
    if "lookup_keys" in params:
        keys = set(params["lookup_keys"])
        if len(keys) > 10:
            raise StripeError("You can specify up to 10 lookup_keys.", param="lookup_keys")
        items = [p for p in items if p["lookup_key"] in keys]
    interval = (params.get("recurring") or {}).get("interval")
    if interval:
        items = [p for p in items if (p["recurring"] or {}).get("interval") == interval]
    if "created" in params:
        items = [p for p in items if match_created(p, params["created"])]
    return paginate(items, params, "/v1/prices")


def search_prices(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/prices/search``."""
    fields = frozenset({"active", "currency", "lookup_key", "product", "type", "created"})
    return search(store.all("price"), params, fields, "prices", "/v1/prices/search")


# Customers --------------------------------------------------------------------------------


def create_customer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/customers``."""
    customer = store.add(objects.customer(store, params))
    emit(store, "customer.created", customer)
    return customer


def update_customer(store: Store, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/customers/{id}``."""
    customer = store.get(customer_id, "customer")
    before = store.snapshot(customer)
    for key in _SIMPLE_CUSTOMER_FIELDS:
        if key in params:
            customer[key] = None if params[key] == "" else params[key]
    if "balance" in params:
        customer["balance"] = params["balance"]
    if "metadata" in params:
        customer["metadata"] = deep_merge_metadata(customer["metadata"], params["metadata"])
    diff = changes(before, customer)
    if diff:
        emit(store, "customer.updated", customer, diff)
    return customer


def delete_customer(store: Store, customer_id: str) -> dict[str, Any]:
    """``DELETE /v1/customers/{id}``."""
    customer = store.get(customer_id, "customer")
    del store.objects[customer_id]
    emit(store, "customer.deleted", customer)
    return {"id": customer_id, "object": "customer", "deleted": True}


def list_customers(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/customers`` with ``email`` (exact, case-sensitive like Stripe) and
    ``created``."""
    items = store.all("customer")
    if "email" in params:
        items = [c for c in items if c.get("email") == params["email"]]
    if "created" in params:
        items = [c for c in items if match_created(c, params["created"])]
    return paginate(items, params, "/v1/customers")


def search_customers(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/customers/search`` (``email:'x'``, ``metadata['k']:'v'``, ``name~'abc'``...)."""
    fields = frozenset({"email", "name", "phone", "created"})
    return search(store.all("customer"), params, fields, "customers", "/v1/customers/search")
