"""Checkout Sessions: creation, expiry, and the payment made on the hosted page."""

from __future__ import annotations

from typing import Any

from tools.stripe_emulator import billing, catalog, charges, objects
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.events import changes, emit
from tools.stripe_emulator.expand import register_computed
from tools.stripe_emulator.state import Store, match_created, paginate

MIN_EXPIRY = 30 * 60
MAX_EXPIRY = 24 * 60 * 60
DEFAULT_EMAIL = "customer@example.com"


def _line_items_list(store: Store, session: dict[str, Any]) -> dict[str, Any]:
    items = store.hidden(session["id"]).get("line_items", [])
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


register_computed("checkout.session", "line_items", _line_items_list)


def _resolve_line_item(
    store: Store, index: int, spec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    where = f"line_items[{index}]"
    if spec.get("price"):
        price = store.get(spec["price"], "price", f"{where}[price]")
        if not price["active"]:
            raise StripeError(
                "The price specified is inactive. This field only accepts active prices.",
                param=f"{where}[price]",
            )
    elif spec.get("price_data"):
        data = dict(spec["price_data"])
        if data.get("product"):
            product_id = store.get(data["product"], "product", f"{where}[price_data][product]")[
                "id"
            ]
        elif data.get("product_data"):
            product_id = catalog.create_product(store, dict(data["product_data"]))["id"]
        else:
            raise StripeError(
                f"Missing required param: {where}[price_data][product].",
                code="parameter_missing",
                param=f"{where}[price_data][product]",
            )
        # Inline prices are created inactive, so they never show up as catalogue prices.
        price = store.add(objects.price(store, {**data, "active": False}, product_id))
    else:
        raise StripeError(
            f"Missing required param: {where}[price].",
            code="parameter_missing",
            param=f"{where}[price]",
        )
    if "quantity" not in spec:
        raise StripeError(
            f"Quantity is required. Add `quantity` to `{where}`",
            code="parameter_missing",
            param=f"{where}[quantity]",
        )
    quantity = spec["quantity"]
    if quantity < 1:
        raise StripeError(
            "This value must be greater than or equal to 1.", param=f"{where}[quantity]"
        )
    product = store.objects.get(price["product"])
    return price, product, quantity


def _check_url(params: dict[str, Any], field: str) -> None:
    value = params.get(field)
    if value is not None and not value.startswith(("http://", "https://")):
        raise StripeError("Not a valid URL", code="url_invalid", param=field)


def create_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/checkout/sessions`` in ``payment`` or ``subscription`` mode."""
    mode = params.get("mode")
    if mode is None:
        raise StripeError("Missing required param: mode.", code="parameter_missing", param="mode")
    if mode not in ("payment", "subscription"):
        raise StripeError(
            f"The emulator supports `payment` and `subscription` mode, not `{mode}`.",
            param="mode",
        )
    specs = params.get("line_items") or []
    if not specs:
        raise StripeError(
            "Missing required param: line_items.", code="parameter_missing", param="line_items"
        )
    resolved = [_resolve_line_item(store, i, spec) for i, spec in enumerate(specs)]
    currencies = {price["currency"] for price, _, _ in resolved}
    if len(currencies) > 1:
        raise StripeError("All line items must have the same currency.", param="line_items")
    if mode == "payment":
        for index, (price, _, _) in enumerate(resolved):
            if price["type"] == "recurring":
                raise StripeError(
                    "You specified `payment` mode but passed a recurring price. Either switch "
                    "to `subscription` mode or use only one-time prices.",
                    param=f"line_items[{index}][price]",
                )
        if "subscription_data" in params:
            raise StripeError(
                "You can not pass `subscription_data` in `payment` mode.",
                param="subscription_data",
            )
    else:
        if not any(price["type"] == "recurring" for price, _, _ in resolved):
            raise StripeError(
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
                param="line_items",
            )
        if "payment_intent_data" in params:
            raise StripeError(
                "You can not pass `payment_intent_data` in `subscription` mode.",
                param="payment_intent_data",
            )
    customer_id = params.get("customer")
    if customer_id:
        store.get(customer_id, "customer", "customer")
        if params.get("customer_email"):
            raise StripeError(
                "You may only specify one of these parameters: customer, customer_email.",
                code="parameters_exclusive",
                param="customer_email",
            )
    for field in ("success_url", "cancel_url", "return_url"):
        _check_url(params, field)
    now = store.now()
    expires_at = params.get("expires_at", now + MAX_EXPIRY)
    if expires_at < now + MIN_EXPIRY:
        raise StripeError(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
            "creation.",
            param="expires_at",
        )
    if expires_at > now + MAX_EXPIRY:
        raise StripeError(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    line_items = [objects.checkout_line_item(p, prod, q) for p, prod, q in resolved]
    amount = sum(li["amount_total"] for li in line_items)
    session = objects.checkout_session(
        store,
        {
            "allow_promotion_codes": params.get("allow_promotion_codes"),
            "amount_subtotal": amount,
            "amount_total": amount,
            "billing_address_collection": params.get("billing_address_collection"),
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "currency": currencies.pop(),
            "customer": customer_id,
            "customer_creation": (
                (params.get("customer_creation") or "if_required")
                if mode == "payment" and not customer_id
                else None
            ),
            "customer_email": params.get("customer_email"),
            "expires_at": expires_at,
            "invoice_creation": {
                "enabled": False,
                "invoice_data": {
                    "account_tax_ids": None,
                    "custom_fields": None,
                    "description": None,
                    "footer": None,
                    "issuer": None,
                    "metadata": {},
                    "rendering_options": None,
                },
            }
            if mode == "payment"
            else None,
            "locale": params.get("locale"),
            "metadata": dict(params.get("metadata") or {}),
            "mode": mode,
            "payment_method_collection": "always" if mode == "subscription" else None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "phone_number_collection": {"enabled": False},
            "submit_type": params.get("submit_type"),
            "success_url": params.get("success_url"),
            "ui_mode": params.get("ui_mode", "hosted_page"),
        },
    )
    if params.get("return_url"):
        # Embedded and custom UIs only: a hosted page's session has no return_url at all.
        session["return_url"] = params["return_url"]
    session["url"] = f"{store.base_url}/checkout/{session['id']}"
    store.add(session)
    hidden = store.hidden(session["id"])
    hidden["line_items"] = line_items
    hidden["payment_intent_data"] = dict(params.get("payment_intent_data") or {})
    hidden["subscription_data"] = dict(params.get("subscription_data") or {})
    return session


def refresh(store: Store, session: dict[str, Any]) -> dict[str, Any]:
    """Expire ``session`` if its ``expires_at`` has passed (Stripe does this on its own)."""
    if session["status"] == "open" and store.now() >= session["expires_at"]:
        _expire(store, session)
    return session


def retrieve_session(store: Store, session_id: str) -> dict[str, Any]:
    """``GET /v1/checkout/sessions/{id}``."""
    return refresh(store, store.get(session_id, "checkout.session"))


def list_sessions(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/checkout/sessions`` (``customer``, ``payment_intent``, ``subscription``,
    ``status``, ``created``)."""
    items = [refresh(store, s) for s in store.all("checkout.session")]
    for field in ("customer", "payment_intent", "subscription", "status"):
        if field in params:
            items = [s for s in items if s[field] == params[field]]
    if "created" in params:
        items = [s for s in items if match_created(s, params["created"])]
    return paginate(items, params, "/v1/checkout/sessions")


def list_line_items(store: Store, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/checkout/sessions/{id}/line_items`` (in the order they were given)."""
    session = store.get(session_id, "checkout.session", "session")
    items = list(reversed(store.hidden(session["id"]).get("line_items", [])))
    page = paginate(items, params, f"/v1/checkout/sessions/{session_id}/line_items")
    page["data"] = list(reversed(page["data"]))
    return page


def _expire(store: Store, session: dict[str, Any]) -> None:
    before = store.snapshot(session)
    session.update(status="expired", url=None)
    if session["payment_intent"]:
        charges.cancel_intent(store, store.objects[session["payment_intent"]], "abandoned")
    emit(store, "checkout.session.expired", session, changes(before, session))


def expire_session(store: Store, session_id: str) -> dict[str, Any]:
    """``POST /v1/checkout/sessions/{id}/expire``."""
    session = refresh(store, store.get(session_id, "checkout.session", "session"))
    if session["status"] != "open":
        raise StripeError(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".'
        )
    _expire(store, session)
    return session


def _customer_details(email: str | None, name: str | None) -> dict[str, Any]:
    return {
        "address": {
            "city": None,
            "country": "US",
            "line1": None,
            "line2": None,
            "postal_code": "42424",
            "state": None,
        },
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": name,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


class SessionNotPayable(StripeError):
    """The session is expired or already complete."""


def pay(
    store: Store,
    session_id: str,
    outcome: str,
    *,
    email: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Pay a session as the hosted page does.

    ``success`` completes it (``checkout.session.completed``), ``decline`` leaves it open after
    ``payment_intent.payment_failed``, ``delayed`` completes it with ``payment_status: unpaid``
    until :func:`settle`.
    """
    session = refresh(store, store.get(session_id, "checkout.session", "session"))
    if session["status"] == "expired":
        raise SessionNotPayable("This Checkout Session has expired.", param="session")
    if session["status"] == "complete":
        raise SessionNotPayable("This Checkout Session is already complete.", param="session")
    if outcome not in ("success", "decline", "delayed"):
        raise StripeError("outcome must be success, decline or delayed.", param="outcome")
    hidden = store.hidden(session_id)
    customer = store.objects.get(session["customer"] or "")
    email = email or session["customer_email"] or (customer or {}).get("email") or DEFAULT_EMAIL
    name = name or (customer or {}).get("name") or "Jenny Rosen"
    before = store.snapshot(session)

    if session["mode"] == "subscription" and outcome != "decline":
        if customer is None:
            customer = catalog.create_customer(store, {"email": email, "name": name})
        sub_data = hidden["subscription_data"]
        sub, invoice = billing.create_from_checkout(
            store,
            customer=customer,
            line_items=hidden["line_items"],
            metadata=dict(sub_data.get("metadata") or {}),
            outcome="success" if outcome == "success" else "delayed",
            description=sub_data.get("description"),
        )
        session.update(customer=customer["id"], subscription=sub["id"], invoice=invoice["id"])
    else:
        intent = store.objects.get(session["payment_intent"] or "") or store.objects.get(
            hidden.get("declined_intent", "")
        )
        if customer is None and session["customer_creation"] == "always" and outcome != "decline":
            # Checkout creates the customer of a payment when asked to (customer_creation).
            customer = catalog.create_customer(store, {"email": email, "name": name})
            session["customer"] = customer["id"]
        if intent is None:
            pi_data = hidden["payment_intent_data"]
            intent = charges.new_intent(
                store,
                amount=session["amount_total"],
                currency=session["currency"],
                customer_id=customer["id"] if customer else None,
                metadata=dict(pi_data.get("metadata") or {}),
                description=pi_data.get("description"),
                receipt_email=pi_data.get("receipt_email"),
            )
        if session["mode"] == "payment":
            session["payment_intent"] = intent["id"]
        else:
            hidden["declined_intent"] = intent["id"]
        charges.attempt(store, intent, outcome, email=email, name=name)
    if outcome == "decline":
        return session
    hidden["outcome"] = outcome
    session.update(
        status="complete",
        payment_status="paid" if outcome == "success" else "unpaid",
        customer_details=_customer_details(email, name),
        url=None,
    )
    emit(store, "checkout.session.completed", session, changes(before, session))
    return session


def settle(store: Store, session_id: str, succeeded: bool) -> dict[str, Any]:
    """Finish a delayed payment: ``checkout.session.async_payment_succeeded`` or ``_failed``."""
    session = store.get(session_id, "checkout.session", "session")
    hidden = store.hidden(session_id)
    if hidden.get("outcome") != "delayed" or hidden.get("settled"):
        raise StripeError(
            f"Checkout Session {session_id} has no delayed payment waiting to settle.",
            param="session",
        )
    hidden["settled"] = True
    if session["mode"] == "subscription":
        billing.settle_invoice(store, session["invoice"], succeeded)
    else:
        charges.settle(store, store.objects[session["payment_intent"]], succeeded)
    before = store.snapshot(session)
    if succeeded:
        session["payment_status"] = "paid"
    emit(
        store,
        "checkout.session.async_payment_succeeded"
        if succeeded
        else "checkout.session.async_payment_failed",
        session,
        changes(before, session),
    )
    return session


def line_item_summary(store: Store, session: dict[str, Any]) -> list[dict[str, Any]]:
    """The session's line items, for the hosted page."""
    items: list[dict[str, Any]] = store.hidden(session["id"]).get("line_items", [])
    return items
