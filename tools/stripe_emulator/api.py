"""The emulator's behaviour, independent of HTTP: the route table of the Stripe API it serves,
and the test helpers under ``/_emulator``."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stripe import params as sp
from stripe.params import billing_portal as sp_billing_portal
from stripe.params import checkout as sp_checkout

from tools.stripe_emulator import (
    billing,
    billing_portal,
    catalog,
    charges,
    checkout,
    events,
    webhook_endpoints,
)
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.faults import FaultRegistry
from tools.stripe_emulator.state import Store
from tools.stripe_emulator.webhooks import WebhookConfig, WebhookDispatcher

Handler = Callable[["Emulator", dict[str, str], dict[str, Any]], dict[str, Any]]


@dataclass
class Route:
    """One endpoint: method, path template (``{name}`` segments), params schema, handler."""

    method: str
    template: str
    params: type | None
    handler: Handler

    def __post_init__(self) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        self.regex = re.compile(f"^{pattern}$")


class Emulator:
    """State plus behaviour: the store, webhook delivery and fault injection."""

    def __init__(self, api_key: str | None, webhooks: WebhookConfig, base_url: str) -> None:
        self.api_key = api_key
        self.store = Store(base_url=base_url)
        self.faults = FaultRegistry()
        self.webhooks = WebhookDispatcher(self.store, webhooks)
        self.store.event_listeners.append(self.webhooks.on_event)

    def key_accepted(self, key: str | None) -> bool:
        """Only ``api_key`` when one is configured, otherwise any test-mode secret key."""
        if not key:
            return False
        if self.api_key is not None:
            return key == self.api_key
        return key.startswith(("sk_test_", "rk_test_"))

    def reset(self) -> None:
        """Forget all objects, events, saved responses, faults and call counts."""
        with self.store.lock:
            self.webhooks.reset()
            self.store.reset()
            self.faults.clear()
            self.faults.reset_calls()

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The API route serving ``method path`` and its path arguments."""
        for route in API_ROUTES:
            if route.method == method:
                found = route.regex.match(path)
                if found:
                    return route, found.groupdict()
        return None

    # Test helpers (/_emulator) ----------------------------------------------------------

    def helper(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Serve a ``/_emulator`` helper call; returns ``(status, JSON body)``."""
        for route_method, regex, fn in _HELPERS:
            found = regex.match(path)
            if found and route_method == method:
                return 200, fn(self, found.groupdict(), body)
        raise StripeError(f"Unknown emulator helper: {method} {path}", status=404)

    def state_summary(self) -> dict[str, Any]:
        """Object counts, clock and delivery state."""
        with self.store.lock:
            counts = {kind: len(self.store.all(kind)) for kind in sorted(self.store.order)}
            return {
                "objects": counts,
                "now": self.store.now(),
                "clock_offset": self.store.clock_offset,
                "refund_next_status": self.store.refund_next_status,
                "webhooks": self.webhooks.summary(),
                "webhook_endpoint": self.webhooks.config.public(),
                "base_url": self.store.base_url,
            }


def _get(kind: str) -> Handler:
    return lambda emu, args, _params: emu.store.get(next(iter(args.values())), kind)


def _arg(args: dict[str, str]) -> str:
    return next(iter(args.values()))


API_ROUTES: list[Route] = [
    # Products
    Route(
        "POST",
        "/v1/products",
        sp.ProductCreateParams,
        lambda e, a, p: catalog.create_product(e.store, p),
    ),
    Route(
        "GET",
        "/v1/products/search",
        sp.ProductSearchParams,
        lambda e, a, p: catalog.search_products(e.store, p),
    ),
    Route("GET", "/v1/products/{id}", sp.ProductRetrieveParams, _get("product")),
    Route(
        "POST",
        "/v1/products/{id}",
        sp.ProductUpdateParams,
        lambda e, a, p: catalog.update_product(e.store, _arg(a), p),
    ),
    Route(
        "DELETE",
        "/v1/products/{id}",
        sp.ProductDeleteParams,
        lambda e, a, p: catalog.delete_product(e.store, _arg(a)),
    ),
    Route(
        "GET",
        "/v1/products",
        sp.ProductListParams,
        lambda e, a, p: catalog.list_products(e.store, p),
    ),
    # Prices
    Route(
        "POST", "/v1/prices", sp.PriceCreateParams, lambda e, a, p: catalog.create_price(e.store, p)
    ),
    Route(
        "GET",
        "/v1/prices/search",
        sp.PriceSearchParams,
        lambda e, a, p: catalog.search_prices(e.store, p),
    ),
    Route("GET", "/v1/prices/{price}", sp.PriceRetrieveParams, _get("price")),
    Route(
        "POST",
        "/v1/prices/{price}",
        sp.PriceUpdateParams,
        lambda e, a, p: catalog.update_price(e.store, _arg(a), p),
    ),
    Route("GET", "/v1/prices", sp.PriceListParams, lambda e, a, p: catalog.list_prices(e.store, p)),
    # Customers
    Route(
        "POST",
        "/v1/customers",
        sp.CustomerCreateParams,
        lambda e, a, p: catalog.create_customer(e.store, p),
    ),
    Route(
        "GET",
        "/v1/customers/search",
        sp.CustomerSearchParams,
        lambda e, a, p: catalog.search_customers(e.store, p),
    ),
    Route("GET", "/v1/customers/{customer}", sp.CustomerRetrieveParams, _get("customer")),
    Route(
        "POST",
        "/v1/customers/{customer}",
        sp.CustomerUpdateParams,
        lambda e, a, p: catalog.update_customer(e.store, _arg(a), p),
    ),
    Route(
        "DELETE",
        "/v1/customers/{customer}",
        sp.CustomerDeleteParams,
        lambda e, a, p: catalog.delete_customer(e.store, _arg(a)),
    ),
    Route(
        "GET",
        "/v1/customers",
        sp.CustomerListParams,
        lambda e, a, p: catalog.list_customers(e.store, p),
    ),
    # Checkout Sessions
    Route(
        "POST",
        "/v1/checkout/sessions",
        sp_checkout.SessionCreateParams,
        lambda e, a, p: checkout.create_session(e.store, p),
    ),
    Route(
        "GET",
        "/v1/checkout/sessions",
        sp_checkout.SessionListParams,
        lambda e, a, p: checkout.list_sessions(e.store, p),
    ),
    Route(
        "GET",
        "/v1/checkout/sessions/{session}",
        sp_checkout.SessionRetrieveParams,
        lambda e, a, p: checkout.retrieve_session(e.store, _arg(a)),
    ),
    Route(
        "POST",
        "/v1/checkout/sessions/{session}/expire",
        sp_checkout.SessionExpireParams,
        lambda e, a, p: checkout.expire_session(e.store, _arg(a)),
    ),
    Route(
        "GET",
        "/v1/checkout/sessions/{session}/line_items",
        sp_checkout.SessionLineItemListParams,
        lambda e, a, p: checkout.list_line_items(e.store, _arg(a), p),
    ),
    # Payment intents and charges
    Route(
        "GET",
        "/v1/payment_intents/{intent}",
        sp.PaymentIntentRetrieveParams,
        _get("payment_intent"),
    ),
    Route(
        "POST",
        "/v1/payment_intents/{intent}",
        sp.PaymentIntentUpdateParams,
        lambda e, a, p: charges.update_intent(e.store, _arg(a), p),
    ),
    Route(
        "GET",
        "/v1/payment_intents",
        sp.PaymentIntentListParams,
        lambda e, a, p: charges.list_intents(e.store, p),
    ),
    Route("GET", "/v1/charges/{charge}", sp.ChargeRetrieveParams, _get("charge")),
    Route(
        "GET", "/v1/charges", sp.ChargeListParams, lambda e, a, p: charges.list_charges(e.store, p)
    ),
    # Refunds
    Route(
        "POST",
        "/v1/refunds",
        sp.RefundCreateParams,
        lambda e, a, p: charges.create_refund(e.store, p),
    ),
    Route("GET", "/v1/refunds/{refund}", sp.RefundRetrieveParams, _get("refund")),
    Route(
        "POST",
        "/v1/refunds/{refund}",
        sp.RefundUpdateParams,
        lambda e, a, p: charges.update_refund(e.store, _arg(a), p),
    ),
    Route(
        "GET", "/v1/refunds", sp.RefundListParams, lambda e, a, p: charges.list_refunds(e.store, p)
    ),
    # Subscriptions
    Route(
        "GET",
        "/v1/subscriptions/search",
        sp.SubscriptionSearchParams,
        lambda e, a, p: billing.search_subscriptions(e.store, p),
    ),
    Route(
        "GET",
        "/v1/subscriptions/{subscription}",
        sp.SubscriptionRetrieveParams,
        _get("subscription"),
    ),
    Route(
        "POST",
        "/v1/subscriptions/{subscription}",
        sp.SubscriptionUpdateParams,
        lambda e, a, p: billing.update_subscription(e.store, _arg(a), p),
    ),
    Route(
        "DELETE",
        "/v1/subscriptions/{subscription}",
        sp.SubscriptionCancelParams,
        lambda e, a, p: billing.cancel_subscription(e.store, _arg(a), p),
    ),
    Route(
        "POST",
        "/v1/subscriptions/{subscription}/pause",
        sp.SubscriptionPauseParams,
        lambda e, a, p: billing.pause(e.store, _arg(a)),
    ),
    Route(
        "POST",
        "/v1/subscriptions/{subscription}/resume",
        sp.SubscriptionResumeParams,
        lambda e, a, p: billing.resume(e.store, _arg(a), p),
    ),
    Route(
        "GET",
        "/v1/subscriptions",
        sp.SubscriptionListParams,
        lambda e, a, p: billing.list_subscriptions(e.store, p),
    ),
    Route(
        "GET",
        "/v1/subscription_items/{item}",
        sp.SubscriptionItemRetrieveParams,
        _get("subscription_item"),
    ),
    Route(
        "GET",
        "/v1/subscription_items",
        sp.SubscriptionItemListParams,
        lambda e, a, p: billing.list_subscription_items(e.store, p),
    ),
    # Invoices
    Route(
        "POST",
        "/v1/invoices/create_preview",
        sp.InvoiceCreatePreviewParams,
        lambda e, a, p: billing.preview_invoice(e.store, p),
    ),
    Route("GET", "/v1/invoices/{invoice}", sp.InvoiceRetrieveParams, _get("invoice")),
    Route(
        "GET",
        "/v1/invoices/{invoice}/lines",
        sp.InvoiceLineItemListParams,
        lambda e, a, p: billing.list_invoice_lines(e.store, _arg(a), p),
    ),
    Route(
        "GET",
        "/v1/invoices",
        sp.InvoiceListParams,
        lambda e, a, p: billing.list_invoices(e.store, p),
    ),
    Route(
        "GET", "/v1/invoiceitems/{invoiceitem}", sp.InvoiceItemRetrieveParams, _get("invoiceitem")
    ),
    Route(
        "GET",
        "/v1/invoiceitems",
        sp.InvoiceItemListParams,
        lambda e, a, p: billing.list_invoice_items(e.store, p),
    ),
    # Customer portal
    Route(
        "POST",
        "/v1/billing_portal/configurations",
        sp_billing_portal.ConfigurationCreateParams,
        lambda e, a, p: billing_portal.create_configuration(e.store, p),
    ),
    Route(
        "GET",
        "/v1/billing_portal/configurations/{configuration}",
        sp_billing_portal.ConfigurationRetrieveParams,
        lambda e, a, p: billing_portal.retrieve_configuration(e.store, _arg(a)),
    ),
    Route(
        "POST",
        "/v1/billing_portal/configurations/{configuration}",
        sp_billing_portal.ConfigurationUpdateParams,
        lambda e, a, p: billing_portal.update_configuration(e.store, _arg(a), p),
    ),
    Route(
        "GET",
        "/v1/billing_portal/configurations",
        sp_billing_portal.ConfigurationListParams,
        lambda e, a, p: billing_portal.list_configurations(e.store, p),
    ),
    Route(
        "POST",
        "/v1/billing_portal/sessions",
        sp_billing_portal.SessionCreateParams,
        lambda e, a, p: billing_portal.create_session(e.store, p),
    ),
    # Disputes
    Route("GET", "/v1/disputes/{dispute}", sp.DisputeRetrieveParams, _get("dispute")),
    Route(
        "POST",
        "/v1/disputes/{dispute}",
        sp.DisputeUpdateParams,
        lambda e, a, p: charges.update_dispute(e.store, _arg(a), p),
    ),
    Route(
        "POST",
        "/v1/disputes/{dispute}/close",
        sp.DisputeCloseParams,
        lambda e, a, p: charges.close_dispute(e.store, _arg(a), "lost"),
    ),
    Route(
        "GET",
        "/v1/disputes",
        sp.DisputeListParams,
        lambda e, a, p: charges.list_disputes(e.store, p),
    ),
    # Events
    Route(
        "GET",
        "/v1/events/{id}",
        sp.EventRetrieveParams,
        lambda e, a, p: events.retrieve(e.store, _arg(a)),
    ),
    Route("GET", "/v1/events", sp.EventListParams, lambda e, a, p: events.list_events(e.store, p)),
    # Webhook endpoints
    Route(
        "POST",
        "/v1/webhook_endpoints",
        sp.WebhookEndpointCreateParams,
        lambda e, a, p: webhook_endpoints.create_endpoint(e.store, p),
    ),
    Route(
        "GET",
        "/v1/webhook_endpoints/{endpoint}",
        sp.WebhookEndpointRetrieveParams,
        _get("webhook_endpoint"),
    ),
    Route(
        "POST",
        "/v1/webhook_endpoints/{endpoint}",
        sp.WebhookEndpointUpdateParams,
        lambda e, a, p: webhook_endpoints.update_endpoint(e.store, _arg(a), p),
    ),
    Route(
        "DELETE",
        "/v1/webhook_endpoints/{endpoint}",
        sp.WebhookEndpointDeleteParams,
        lambda e, a, p: webhook_endpoints.delete_endpoint(e.store, _arg(a)),
    ),
    Route(
        "GET",
        "/v1/webhook_endpoints",
        sp.WebhookEndpointListParams,
        lambda e, a, p: webhook_endpoints.list_endpoints(e.store, p),
    ),
]


# Helper implementations -------------------------------------------------------------------

HelperFn = Callable[[Emulator, dict[str, str], dict[str, Any]], Any]


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise StripeError(f"{key} must be true or false.", param=key)
    return value


def _reset(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    emu.reset()
    return {"reset": True}


def _state(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    return emu.state_summary()


def _add_fault(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    rule = emu.faults.add(body)
    return {"fault": rule.__dict__, **emu.faults.snapshot()}


def _clear_faults(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    emu.faults.clear()
    return emu.faults.snapshot()


def _calls(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    return emu.faults.snapshot()


def _reset_calls(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    emu.faults.reset_calls()
    return emu.faults.snapshot()


def _pay(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        return checkout.pay(
            emu.store,
            args["id"],
            str(body.get("outcome", "success")),
            email=body.get("email"),
            name=body.get("name"),
        )


def _settle_session(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        return checkout.settle(emu.store, args["id"], _bool(body, "succeeded", True))


def _expire_session(emu: Emulator, args: dict[str, str], _b: dict[str, Any]) -> Any:
    with emu.store.lock:
        return checkout.expire_session(emu.store, args["id"])


def _open_dispute(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        return charges.open_dispute(emu.store, body)


def _close_dispute(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        return charges.close_dispute(emu.store, args["id"], str(body.get("status", "won")))


def _refund_mode(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    status = body.get("next_status", "succeeded")
    if status not in ("pending", "succeeded"):
        raise StripeError("next_status must be pending or succeeded.", param="next_status")
    count = body.get("count")
    with emu.store.lock:
        emu.store.refund_next_status = None if status == "succeeded" else status
        emu.store.refund_next_count = int(count) if count is not None else None
        return {"next_status": status, "count": emu.store.refund_next_count}


def _settle_refund(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        return charges.settle_refund(emu.store, args["id"], str(body.get("status", "succeeded")))


def _advance(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    payment = str(body.get("payment", "success"))
    if payment not in ("success", "decline"):
        raise StripeError("payment must be success or decline.", param="payment")
    with emu.store.lock:
        return billing.advance(emu.store, args["id"], payment)


def _pause(emu: Emulator, args: dict[str, str], _b: dict[str, Any]) -> Any:
    with emu.store.lock:
        return billing.pause(emu.store, args["id"])


def _resume(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        return billing.resume(emu.store, args["id"], body)


def _clock(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        emu.store.clock_offset += int(body.get("advance_seconds", 0))
        return {"now": emu.store.now(), "clock_offset": emu.store.clock_offset}


def _redeliver(emu: Emulator, args: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        emu.store.get(args["id"], "event")
    times = int(body.get("times", 1))
    return {"queued": emu.webhooks.enqueue([args["id"]] * max(0, times))}


def _deliver(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    with emu.store.lock:
        if "ids" in body:
            ids = [str(i) for i in body["ids"]]
            for event_id in ids:
                emu.store.get(event_id, "event")
        else:
            # Without ids: every event still waiting for delivery, oldest first.
            ids = [e["id"] for e in reversed(emu.store.all("event")) if e["pending_webhooks"]]
    copies = 1 + int(body.get("duplicates", 0))
    sequence = [event_id for _ in range(copies) for event_id in ids]
    order = body.get("order", "as_given")
    if order == "reverse":
        sequence.reverse()
    elif order == "shuffle":
        random.Random(body.get("seed")).shuffle(sequence)
    elif order != "as_given":
        raise StripeError("order must be as_given, reverse or shuffle.", param="order")
    emu.webhooks.enqueue(sequence)
    return {"queued": len(sequence), "order": sequence}


def _deliveries(emu: Emulator, args: dict[str, str], _b: dict[str, Any]) -> Any:
    with emu.store.lock:
        event = emu.store.get(args["id"], "event")
        pending = event["pending_webhooks"]
    attempts = [a.__dict__ for a in emu.webhooks.attempts.get(args["id"], [])]
    return {"id": args["id"], "pending_webhooks": pending, "attempts": attempts}


def _flush(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    drained = emu.webhooks.flush(float(body.get("timeout", 30)))
    return {"drained": drained, **emu.webhooks.summary()}


def _endpoint(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    return emu.webhooks.config.public()


def _configure_endpoint(emu: Emulator, _a: dict[str, str], body: dict[str, Any]) -> Any:
    allowed = {"url", "secret", "auto_deliver", "max_attempts", "retry_backoff", "timeout"}
    unknown = set(body) - allowed
    if unknown:
        raise StripeError(f"Unknown field: {sorted(unknown)[0]}", param=sorted(unknown)[0])
    changes = dict(body)
    if "url" not in changes:
        changes["url"] = emu.webhooks.config.url
    return emu.webhooks.configure(**changes).public()


def _webhooks(emu: Emulator, _a: dict[str, str], _b: dict[str, Any]) -> Any:
    return {"endpoint": emu.webhooks.config.public(), **emu.webhooks.summary()}


def _helper(method: str, template: str, fn: HelperFn) -> tuple[str, re.Pattern[str], HelperFn]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return method, re.compile(f"^/_emulator{pattern}$"), fn


_HELPERS = [
    _helper("POST", "/reset", _reset),
    _helper("GET", "/state", _state),
    _helper("POST", "/faults", _add_fault),
    _helper("GET", "/faults", _calls),
    _helper("DELETE", "/faults", _clear_faults),
    _helper("GET", "/calls", _calls),
    _helper("DELETE", "/calls", _reset_calls),
    _helper("POST", "/checkout/sessions/{id}/pay", _pay),
    _helper("POST", "/checkout/sessions/{id}/settle", _settle_session),
    _helper("POST", "/checkout/sessions/{id}/expire", _expire_session),
    _helper("POST", "/disputes", _open_dispute),
    _helper("POST", "/disputes/{id}/close", _close_dispute),
    _helper("POST", "/refunds/mode", _refund_mode),
    _helper("POST", "/refunds/{id}/settle", _settle_refund),
    _helper("POST", "/subscriptions/{id}/advance", _advance),
    _helper("POST", "/subscriptions/{id}/pause", _pause),
    _helper("POST", "/subscriptions/{id}/resume", _resume),
    _helper("POST", "/clock", _clock),
    _helper("GET", "/clock", _clock),
    _helper("POST", "/events/deliver", _deliver),
    _helper("POST", "/events/{id}/redeliver", _redeliver),
    _helper("GET", "/events/{id}/deliveries", _deliveries),
    _helper("POST", "/webhooks/flush", _flush),
    _helper("GET", "/webhooks", _webhooks),
    _helper("GET", "/webhook-endpoint", _endpoint),
    _helper("POST", "/webhook-endpoint", _configure_endpoint),
]
