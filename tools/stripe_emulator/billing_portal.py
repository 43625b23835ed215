"""The customer portal: configurations (``/v1/billing_portal/configurations``), sessions
(``POST /v1/billing_portal/sessions``) and the hosted portal page.

A configuration starts from Stripe's example ``billing_portal.configuration`` with every feature
off, as Stripe creates one: a feature is on only when the create or update call turns it on, and
an update changes only the fields it names. Configurations created through the API are never the
default. The account's default, the one the Dashboard edits, is created (from the same example,
``is_default: true``) the first time a session is opened without ``configuration``, as if it had
been saved in the Dashboard; tests edit it with the update call like any other.

A session starts from Stripe's example ``billing_portal.session`` with the customer, the
``return_url``, the configuration (the one given, which must exist and be active, or the
default) and a ``url`` on this emulator. The page at that URL is a stand-in for Stripe's
portal: it lists the customer's invoices and subscriptions as the emulator holds them, the
features its configuration turns on, and links back to ``return_url``. Stable element ids for
browser tests: ``#portal-customer``, ``#portal-invoices``, ``#portal-features``,
``#return-to-merchant``.
"""

from __future__ import annotations

import copy
from html import escape
from typing import Any

from tools.stripe_emulator import objects
from tools.stripe_emulator.checkout_page import _page  # the hosted Checkout page's look
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.events import changes, emit
from tools.stripe_emulator.state import Store, deep_merge_metadata, new_id, paginate

PAGE_PREFIX = "/billing_portal/sessions/"
CONFIGURATION = "billing_portal.configuration"

# A feature of a new configuration, before the create call's ``features`` apply: all off.
_FEATURES_OFF: dict[str, Any] = {
    "customer_update": {"allowed_updates": [], "enabled": False},
    "invoice_history": {"enabled": False},
    "payment_method_update": {"enabled": False, "payment_method_configuration": None},
    "subscription_cancel": {
        "cancellation_reason": {"enabled": False, "feedback_options": None, "options": []},
        "enabled": False,
        "mode": "at_period_end",
        "proration_behavior": "none",
    },
    "subscription_pause": {
        "duration": {"interval_options": [], "type": "indefinite"},
        "enabled": False,
    },
    "subscription_update": {
        "billing_cycle_anchor": None,
        "default_allowed_updates": [],
        "enabled": False,
        "products": [],
        "proration_behavior": "none",
        "schedule_at_period_end": {"conditions": []},
        "trial_update_behavior": "end_trial",
    },
}


def _merge(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``current``: nested objects merged, lists and values replaced, an empty
    string unsetting a nullable field (Stripe's form encoding of null)."""
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value == "":
            merged[key] = [] if isinstance(merged.get(key), list) else None
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _products(features: dict[str, Any]) -> None:
    # Stripe's form of a product entry: the quantity rule is filled in when omitted.
    for product in features["subscription_update"].get("products") or []:
        product.setdefault("adjustable_quantity", {"enabled": False, "maximum": None, "minimum": 1})


def _configuration(store: Store, *, is_default: bool) -> dict[str, Any]:
    config = objects.fixture(CONFIGURATION)
    now = store.now()
    config.update(
        id=new_id("bpc_"),
        livemode=False,
        created=now,
        updated=now,
        is_default=is_default,
        metadata={},
        application=None,
        default_return_url=None,
        name=None,
    )
    if not is_default:
        config.update(
            business_profile={
                "headline": None,
                "privacy_policy_url": None,
                "terms_of_service_url": None,
            },
            features=copy.deepcopy(_FEATURES_OFF),
            login_page={"enabled": False, "url": None},
        )
    return config


def _apply(config: dict[str, Any], params: dict[str, Any]) -> None:
    for field in ("business_profile", "features"):
        if field in params:
            config[field] = _merge(config[field], params[field])
    _products(config["features"])
    for field in ("default_return_url", "name"):
        if field in params:
            config[field] = params[field] or None
    if "login_page" in params:
        enabled = bool(params["login_page"].get("enabled"))
        # Stripe's address of the login page; the emulator serves no such page.
        suffix = config["id"].removeprefix("bpc_")
        url = f"https://billing.stripe.com/p/login/test_{suffix}" if enabled else None
        config["login_page"] = {"enabled": enabled, "url": url}
    if "metadata" in params:
        config["metadata"] = deep_merge_metadata(config["metadata"] or {}, params["metadata"])


def create_configuration(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/billing_portal/configurations``: every feature off unless ``features`` turns
    it on (``features`` is required, as with Stripe)."""
    config = _configuration(store, is_default=False)
    _apply(config, params)
    store.add(config)
    emit(store, "billing_portal.configuration.created", config)
    return config


def update_configuration(store: Store, config_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/billing_portal/configurations/{id}``: only the fields given change."""
    config = store.get(config_id, CONFIGURATION, param="configuration")
    before = copy.deepcopy(config)
    _apply(config, params)
    if "active" in params:
        if not params["active"] and config["is_default"]:
            raise StripeError("The default configuration cannot be deactivated.", param="active")
        config["active"] = bool(params["active"])
    diff = changes(before, config)
    if diff:
        config["updated"] = store.now()
        emit(store, "billing_portal.configuration.updated", config, changes(before, config))
    return config


def retrieve_configuration(store: Store, config_id: str) -> dict[str, Any]:
    return store.get(config_id, CONFIGURATION, param="configuration")


def list_configurations(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/billing_portal/configurations`` (``active``, ``is_default``), newest first."""
    found = [
        c
        for c in store.all(CONFIGURATION)
        if all(c[name] == params[name] for name in ("active", "is_default") if name in params)
    ]
    return paginate(found, params, "/v1/billing_portal/configurations")


def default_configuration(store: Store) -> dict[str, Any]:
    """The account's default configuration, saved "in the Dashboard" on first use."""
    for config in store.all(CONFIGURATION):
        if config["is_default"]:
            return config
    config = store.add(_configuration(store, is_default=True))
    emit(store, "billing_portal.configuration.created", config)
    return config


def _session_configuration(store: Store, config_id: Any) -> dict[str, Any]:
    if config_id is None:
        return default_configuration(store)
    config = store.get(config_id, CONFIGURATION, param="configuration")
    if not config["active"]:
        raise StripeError(
            "This configuration is inactive. Activate it, or use another configuration, to "
            "create a portal session.",
            param="configuration",
        )
    return config


def create_session(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/billing_portal/sessions``: the customer must exist, like in Stripe, and so
    must the configuration named (active), else the account's default is used."""
    customer = store.get(params.get("customer"), "customer", param="customer")
    if "flow_data" in params:
        # The service opens the portal's home page only; flows are not emulated.
        raise StripeError("flow_data is not supported by the emulator.", param="flow_data")
    configuration = _session_configuration(store, params.get("configuration"))
    session = objects.fixture("billing_portal.session")
    session_id = new_id("bps_")
    session.update(
        id=session_id,
        livemode=False,
        created=store.now(),
        customer=customer["id"],
        configuration=configuration["id"],
        flow=None,
        locale=params.get("locale"),
        on_behalf_of=params.get("on_behalf_of"),
        return_url=params.get("return_url"),
        url=f"{store.base_url}{PAGE_PREFIX}{session_id}",
    )
    return store.add(session)


def render(store: Store, session_id: str) -> tuple[int, str]:
    """``(status, HTML)`` of the hosted portal page of a session."""
    session = store.objects.get(session_id)
    if session is None or session.get("object") != "billing_portal.session":
        return 404, _page("Portal unavailable", "<p class=error id=error>No such session.</p>")
    customer_id = session["customer"]
    invoices = [i for i in store.all("invoice") if i.get("customer") == customer_id]
    subscriptions = [s for s in store.all("subscription") if s.get("customer") == customer_id]
    rows = "".join(
        f"<tr><td>{escape(str(i.get('number') or i['id']))}</td>"
        f"<td>{escape(str(i.get('status')))}</td>"
        f"<td class=num>{escape(objects.format_amount(i['amount_due'], i['currency']))}</td></tr>"
        for i in invoices
    )
    plans = "".join(
        f"<li>{escape(s['id'])}: {escape(str(s.get('status')))}</li>" for s in subscriptions
    )
    config = store.objects.get(session["configuration"]) or {}
    enabled = [
        name
        for name, feature in sorted((config.get("features") or {}).items())
        if isinstance(feature, dict) and feature.get("enabled")
    ]
    features = "".join(f"<li data-feature={escape(n)}>{escape(n)}</li>" for n in enabled)
    back = session.get("return_url")
    link = (
        f'<p><a id=return-to-merchant href="{escape(back)}">Return to the site</a></p>'
        if back
        else ""
    )
    body = f"""
<h1>Payment method and invoices</h1>
<p id=portal-customer>Customer {escape(customer_id)}</p>
<p>On Stripe, this is where the card is updated and invoices are downloaded.</p>
<h2>Invoices</h2>
<table id=portal-invoices>{rows or "<tr><td>No invoices yet.</td></tr>"}</table>
<h2>Subscriptions</h2>
<ul>{plans or "<li>None.</li>"}</ul>
<h2>What this portal offers</h2>
<ul id=portal-features>{features or "<li>Nothing.</li>"}</ul>
{link}
"""
    return 200, _page("Payment method and invoices", body)
