"""The emulator speaks exactly the Stripe API version it pins.

One realistic run drives the emulator, with the unchanged stripe-python client, through every
endpoint and every flow docs/emulator.md lists: the catalog, one-time checkouts paid, declined,
delayed and expired, refunds full, partial, pending and failed, disputes won and lost, a
subscription bought, previewed, changed with prorations, paused, resumed, renewed (paid and
failed) and canceled, and the events API. Every answer (and every helper answer that is a
Stripe object), every stored event and every webhook body is then checked against the
definitions generated from the stripe npm package's types for the pinned version
(tools/stripe_emulator/schemas), and every event type against stripe-python's list. The run
must produce no violation, touch every route, and produce in each flow the events Stripe
sends.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

import tools.stripe_emulator
from tests.emulator.conftest import API_KEY, WEBHOOK_SECRET, Helpers, WebhookReceiver
from tools.stripe_emulator import EmulatorHandle
from tools.stripe_emulator.api import API_ROUTES
from tools.stripe_emulator.conformance import Conformance, stripe_python_event_types
from tools.stripe_emulator.objects import API_VERSION

pytestmark = pytest.mark.integration

DAY = 86400
CHECKOUT_URLS = {"success_url": "https://shop.test/ok", "cancel_url": "https://shop.test/retry"}

# The events Stripe sends in each flow, in the emulator's order (docs/emulator.md, "Webhooks").
PAID = ["charge.succeeded", "payment_intent.succeeded", "charge.updated"]
DECLINED = ["charge.failed", "payment_intent.payment_failed"]
INVOICE_PAID = [
    "invoice.created",
    "invoice.finalized",
    "payment_intent.created",
    *PAID,
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice_payment.paid",
]
EXPECTED_EVENTS: dict[str, list[str]] = {
    "portal configured": ["billing_portal.configuration.created"],
    "portal configuration updated": ["billing_portal.configuration.updated"],
    # The default configuration, saved on first use as if in the Dashboard.
    "portal opened on the default configuration": ["billing_portal.configuration.created"],
    "one-time checkout paid": [
        "payment_intent.created",
        *PAID,
        "checkout.session.completed",
    ],
    "one-time checkout creating its customer": [
        "customer.created",
        "payment_intent.created",
        *PAID,
        "checkout.session.completed",
    ],
    "one-time checkout declined, then paid": [
        "payment_intent.created",
        *DECLINED,
        *PAID,
        "checkout.session.completed",
    ],
    "one-time checkout delayed, settled": [
        "payment_intent.created",
        "charge.pending",
        "payment_intent.processing",
        "checkout.session.completed",
        *PAID,
        "checkout.session.async_payment_succeeded",
    ],
    "one-time checkout delayed, failed": [
        "payment_intent.created",
        "charge.pending",
        "payment_intent.processing",
        "checkout.session.completed",
        *DECLINED,
        "checkout.session.async_payment_failed",
    ],
    "one-time checkout expired": ["checkout.session.expired"],
    "one-time checkout declined, then expired": [
        "payment_intent.created",
        *DECLINED,
        "payment_intent.canceled",
        "checkout.session.expired",
    ],
    "partial refund": ["refund.created", "charge.refunded"],
    "refund metadata": ["refund.updated", "charge.refund.updated"],
    "refund of the rest": ["refund.created", "charge.refunded"],
    "pending refund succeeds": [
        "refund.created",
        "charge.refunded",
        "refund.updated",
        "charge.refund.updated",
    ],
    "pending refund fails": [
        "refund.created",
        "charge.refunded",
        "refund.updated",
        "charge.refund.updated",
        "refund.failed",
    ],
    "dispute opened": ["charge.dispute.created", "charge.dispute.funds_withdrawn"],
    "dispute evidence": ["charge.dispute.updated"],
    "dispute won": ["charge.dispute.closed", "charge.dispute.funds_reinstated"],
    "dispute lost": ["charge.dispute.closed"],
    "subscription checkout": [
        "customer.subscription.created",
        *INVOICE_PAID,
        "checkout.session.completed",
    ],
    "plan change with prorations": [
        "invoiceitem.created",
        "invoiceitem.created",
        "customer.subscription.updated",
    ],
    "plan change invoiced now": [*INVOICE_PAID, "customer.subscription.updated"],
    "cancel at period end, then keep": [
        "customer.subscription.updated",
        "customer.subscription.updated",
    ],
    "renewal paid": [*INVOICE_PAID, "customer.subscription.updated"],
    "renewal failed": [
        "invoice.created",
        "invoice.finalized",
        "payment_intent.created",
        *DECLINED,
        "invoice.payment_failed",
        "customer.subscription.updated",
    ],
    "collection paused, renewal voided": [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.voided",
        "customer.subscription.updated",
        "customer.subscription.updated",
    ],
    "collection paused, renewal uncollectible": [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.marked_uncollectible",
        "customer.subscription.updated",
        "customer.subscription.updated",
    ],
    "pause": ["customer.subscription.paused", "customer.subscription.updated"],
    "resume": [
        *INVOICE_PAID,
        "customer.subscription.resumed",
        "customer.subscription.updated",
    ],
    "plan change to another interval": [*INVOICE_PAID, "customer.subscription.updated"],
    "cancel now": ["customer.subscription.deleted"],
    "canceled at period end": [
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ],
}


@dataclass
class Answer:
    """One HTTP answer the stripe client got."""

    method: str
    url: str
    expand: list[str]
    status: int
    body: bytes

    @property
    def where(self) -> str:
        return f"{self.method} {urlsplit(self.url).path}"


def _expand_params(query: str) -> list[str]:
    return [value for key, value in parse_qsl(query) if key.startswith("expand[")]


class RecordingHTTPClient(stripe.RequestsClient):
    """stripe-python's own HTTP client, keeping every answer it received."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        content, status, response_headers = super().request(method, url, headers, post_data)
        sent = post_data.decode() if isinstance(post_data, bytes) else (post_data or "")
        expand = _expand_params(urlsplit(url).query) + _expand_params(sent)
        self.answers.append(Answer(method.upper(), url, expand, status, content))
        return content, status, response_headers


class RecordingHelpers(Helpers):
    """The ``/_emulator`` helpers, keeping the Stripe objects they answer with."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.objects: list[tuple[str, dict[str, Any]]] = []

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = super().post(path, body)
        if isinstance(answer, dict) and isinstance(answer.get("object"), str):
            self.objects.append((f"POST /_emulator{path}", answer))
        return answer


@dataclass
class Run:
    """What one run produced: answers, helper objects, events per flow, webhook bodies."""

    client: stripe.StripeClient
    http: RecordingHTTPClient
    helpers: RecordingHelpers
    events_by_flow: dict[str, list[str]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    calls_by_route: dict[str, int] = field(default_factory=dict)
    _last_event: str | None = None

    def events_page(self, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /v1/events`` as the JSON on the wire (the client's objects turn decimal
        strings into ``Decimal``)."""
        self.client.v1.events.list(params=params)
        page: dict[str, Any] = json.loads(self.http.answers[-1].body)
        return page

    def _new_events(self) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100}
        if self._last_event:
            params["ending_before"] = self._last_event
        page = self.events_page(params)
        assert not page["has_more"], "more than 100 events in one flow"
        fresh: list[dict[str, Any]] = list(reversed(page["data"]))
        if fresh:
            self._last_event = fresh[-1]["id"]
        return fresh

    @contextmanager
    def flow(self, name: str) -> Iterator[None]:
        """Record the event types created by the block under ``name``."""
        self._new_events()
        yield
        self.events_by_flow[name] = [e["type"] for e in self._new_events()]


# The journey ------------------------------------------------------------------------------


def _price(client: stripe.StripeClient, product: str, amount: int, **extra: Any) -> Any:
    return client.v1.prices.create(
        params={"product": product, "currency": "usd", "unit_amount": amount, **extra}
    )


def _paid_session(run: Run, price: str, customer: str, **extra: Any) -> Any:
    session = run.client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer,
            "line_items": [{"price": price, "quantity": 1}],
            "metadata": {"product": "business_plan_builder"},
            "payment_intent_data": {"metadata": {"member_id": "mem_conformance"}},
            **CHECKOUT_URLS,
            **extra,
        }
    )
    return session


def _pay(run: Run, session_id: str, outcome: str) -> Any:
    return run.helpers.post(f"/checkout/sessions/{session_id}/pay", {"outcome": outcome})


def _paid_intent(run: Run, price: str, customer: str) -> str:
    session = _paid_session(run, price, customer)
    _pay(run, session.id, "success")
    intent: str = run.client.v1.checkout.sessions.retrieve(session.id).payment_intent
    return intent


def _catalog(run: Run) -> dict[str, Any]:
    c = run.client.v1
    product = c.products.create(
        params={
            "name": "Business plan builder",
            "description": "One-time track",
            "default_price_data": {"currency": "usd", "unit_amount": 9900},
        }
    )
    c.products.retrieve(product.id)
    c.products.update(product.id, params={"metadata": {"track": "plan"}})
    c.products.list(params={"active": True, "limit": 5})
    c.products.search(params={"query": "active:'true'"})
    plans = c.products.create(params={"id": "growth_plans", "name": "Growth plans"})
    scrap = c.products.create(params={"name": "Never sold"})
    c.products.delete(scrap.id)

    client = run.client
    one_time = _price(client, product.id, 9900, lookup_key="bpb_usd_v1")
    growth = _price(client, plans.id, 2900, recurring={"interval": "month"})
    scale = _price(client, plans.id, 7900, recurring={"interval": "month"})
    pro = _price(client, plans.id, 19900, recurring={"interval": "month"})
    yearly = _price(client, plans.id, 29000, recurring={"interval": "year"})
    c.prices.retrieve(one_time.id)
    c.prices.update(growth.id, params={"lookup_key": "growth_monthly", "metadata": {"v": "1"}})
    replacement = _price(client, plans.id, 2900, recurring={"interval": "month"})
    c.prices.update(
        replacement.id, params={"lookup_key": "growth_monthly", "transfer_lookup_key": True}
    )
    c.prices.update(growth.id, params={"active": False})
    c.prices.list(params={"lookup_keys": ["growth_monthly"], "expand": ["data.product"]})
    c.prices.search(params={"query": "active:'true' AND type:'recurring'"})

    customer = c.customers.create(
        params={"email": "buyer@example.com", "metadata": {"member_id": "mem_conformance"}}
    )
    c.customers.retrieve(customer.id)
    c.customers.update(customer.id, params={"name": "Jenny Rosen"})
    c.customers.list(params={"email": "buyer@example.com"})
    c.customers.search(params={"query": "metadata['member_id']:'mem_conformance'"})
    gone = c.customers.create(params={"email": "gone@example.com"})
    c.customers.delete(gone.id)
    return {
        "one_time": one_time.id,
        "growth": replacement.id,
        "scale": scale.id,
        "pro": pro.id,
        "yearly": yearly.id,
        "customer": customer.id,
    }


def _one_time_checkouts(run: Run, ids: dict[str, Any]) -> str:
    c = run.client.v1
    price, customer = ids["one_time"], ids["customer"]
    with run.flow("one-time checkout paid"):
        session = _paid_session(run, price, customer)
        c.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
        c.checkout.sessions.line_items.list(session.id)
        _pay(run, session.id, "success")
    done = c.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    c.checkout.sessions.list(params={"customer": customer, "limit": 3})
    intent = c.payment_intents.retrieve(
        done.payment_intent.id, params={"expand": ["latest_charge"]}
    )
    c.payment_intents.list(params={"customer": customer})
    c.payment_intents.update(intent.id, params={"metadata": {"note": "kept"}})
    c.charges.retrieve(intent.latest_charge.id)
    c.charges.retrieve(intent.latest_charge.id, params={"expand": ["refunds"]})
    c.charges.list(params={"payment_intent": intent.id})

    with run.flow("one-time checkout creating its customer"):
        session = c.checkout.sessions.create(
            params={
                "mode": "payment",
                "customer_creation": "always",
                "line_items": [{"price": price, "quantity": 1}],
                **CHECKOUT_URLS,
            }
        )
        _pay(run, session.id, "success")
    assert c.checkout.sessions.retrieve(session.id).customer

    with run.flow("one-time checkout declined, then paid"):
        session = _paid_session(run, price, customer)
        _pay(run, session.id, "decline")
        c.checkout.sessions.retrieve(session.id)
        _pay(run, session.id, "success")

    with run.flow("one-time checkout delayed, settled"):
        session = _paid_session(run, price, customer)
        _pay(run, session.id, "delayed")
        c.charges.list(params={"customer": customer, "limit": 1})
        run.helpers.post(f"/checkout/sessions/{session.id}/settle", {"succeeded": True})

    with run.flow("one-time checkout delayed, failed"):
        session = _paid_session(run, price, customer)
        _pay(run, session.id, "delayed")
        run.helpers.post(f"/checkout/sessions/{session.id}/settle", {"succeeded": False})

    with run.flow("one-time checkout expired"):
        session = _paid_session(run, price, customer)
        c.checkout.sessions.expire(session.id)

    with run.flow("one-time checkout declined, then expired"):
        session = _paid_session(run, price, customer)
        _pay(run, session.id, "decline")
        run.helpers.post(f"/checkout/sessions/{session.id}/expire")
    intent_id: str = intent.id
    return intent_id


def _refunds(run: Run, ids: dict[str, Any], paid_intent: str) -> None:
    c = run.client.v1
    with run.flow("partial refund"):
        partial = c.refunds.create(
            params={
                "payment_intent": paid_intent,
                "amount": 3000,
                "reason": "requested_by_customer",
                "metadata": {"requested_by": "mem_admin"},
            }
        )
    c.refunds.retrieve(partial.id)
    with run.flow("refund metadata"):
        c.refunds.update(partial.id, params={"metadata": {"note": "late delivery"}})
    c.refunds.list(params={"payment_intent": paid_intent})
    charge = c.payment_intents.retrieve(paid_intent).latest_charge
    with run.flow("refund of the rest"):
        c.refunds.create(params={"charge": charge})
    c.charges.retrieve(charge, params={"expand": ["refunds"]})

    other = _paid_intent(run, ids["one_time"], ids["customer"])
    run.helpers.post("/refunds/mode", {"next_status": "pending", "count": 2})
    with run.flow("pending refund succeeds"):
        pending = c.refunds.create(params={"payment_intent": other, "amount": 1000})
        run.helpers.post(f"/refunds/{pending.id}/settle", {"status": "succeeded"})
    with run.flow("pending refund fails"):
        failing = c.refunds.create(params={"payment_intent": other, "amount": 2000})
        run.helpers.post(f"/refunds/{failing.id}/settle", {"status": "failed"})
    c.refunds.retrieve(failing.id)
    c.payment_intents.retrieve(other, params={"expand": ["latest_charge.refunds"]})


def _disputes(run: Run, ids: dict[str, Any]) -> None:
    c = run.client.v1
    won = _paid_intent(run, ids["one_time"], ids["customer"])
    with run.flow("dispute opened"):
        dispute = run.helpers.post("/disputes", {"payment_intent": won, "reason": "fraudulent"})
    c.disputes.retrieve(dispute["id"])
    with run.flow("dispute evidence"):
        c.disputes.update(
            dispute["id"],
            params={"evidence": {"product_description": "A business plan"}, "submit": True},
        )
    c.disputes.list(params={"payment_intent": won})
    with run.flow("dispute won"):
        run.helpers.post(f"/disputes/{dispute['id']}/close", {"status": "won"})

    lost = _paid_intent(run, ids["one_time"], ids["customer"])
    dispute = run.helpers.post("/disputes", {"payment_intent": lost})
    with run.flow("dispute lost"):
        c.disputes.close(dispute["id"])


def _subscriptions(run: Run, ids: dict[str, Any]) -> None:
    c = run.client.v1
    customer = ids["customer"]
    c.invoices.create_preview(
        params={"customer": customer, "subscription_details": {"items": [{"price": ids["growth"]}]}}
    )
    with run.flow("subscription checkout"):
        session = c.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer,
                "line_items": [{"price": ids["growth"], "quantity": 1}],
                "subscription_data": {"metadata": {"member_id": "mem_conformance"}},
                **CHECKOUT_URLS,
            }
        )
        _pay(run, session.id, "success")
    sub_id = c.checkout.sessions.retrieve(session.id).subscription
    sub = c.subscriptions.retrieve(sub_id)
    c.subscriptions.list(params={"customer": customer})
    c.subscriptions.search(params={"query": "status:'active'"})
    item = sub["items"].data[0]
    c.subscription_items.retrieve(item.id)
    c.subscription_items.list(params={"subscription": sub_id})
    c.invoices.retrieve(sub.latest_invoice, params={"expand": ["payments"]})
    c.invoices.list(params={"subscription": sub_id})
    c.invoices.line_items.list(sub.latest_invoice)

    third = item.current_period_start + (item.current_period_end - item.current_period_start) // 3
    change = {"items": [{"id": item.id, "price": ids["scale"]}], "proration_date": third}
    c.invoices.create_preview(
        params={
            "subscription": sub_id,
            "subscription_details": {**change, "proration_behavior": "create_prorations"},
        }
    )
    with run.flow("plan change with prorations"):
        c.subscriptions.update(sub_id, params={**change, "proration_behavior": "create_prorations"})
    pending = c.invoice_items.list(params={"customer": customer, "pending": True})
    c.invoice_items.retrieve(pending.data[0].id)
    with run.flow("plan change invoiced now"):
        c.subscriptions.update(
            sub_id,
            params={
                "items": [{"id": item.id, "price": ids["pro"]}],
                "proration_behavior": "always_invoice",
            },
        )
    with run.flow("cancel at period end, then keep"):
        c.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
        c.subscriptions.update(sub_id, params={"cancel_at_period_end": False})
    with run.flow("renewal paid"):
        run.helpers.post(f"/subscriptions/{sub_id}/advance", {"payment": "success"})
    with run.flow("renewal failed"):
        run.helpers.post(f"/subscriptions/{sub_id}/advance", {"payment": "decline"})
    run.helpers.post(f"/subscriptions/{sub_id}/advance", {"payment": "success"})
    with run.flow("collection paused, renewal voided"):
        c.subscriptions.update(sub_id, params={"pause_collection": {"behavior": "void"}})
        run.helpers.post(f"/subscriptions/{sub_id}/advance")
        c.subscriptions.update(sub_id, params={"pause_collection": ""})
    with run.flow("collection paused, renewal uncollectible"):
        c.subscriptions.update(
            sub_id, params={"pause_collection": {"behavior": "mark_uncollectible"}}
        )
        run.helpers.post(f"/subscriptions/{sub_id}/advance")
        c.subscriptions.update(sub_id, params={"pause_collection": ""})
    with run.flow("pause"):
        c.subscriptions.pause(sub_id, params={"type": "subscription"})
    with run.flow("resume"):
        c.subscriptions.resume(sub_id, params={"billing_cycle_anchor": {"type": "now"}})
    with run.flow("plan change to another interval"):
        c.subscriptions.update(sub_id, params={"items": [{"id": item.id, "price": ids["yearly"]}]})
    with run.flow("cancel now"):
        c.subscriptions.cancel(sub_id)

    # A second subscription, bought by a new customer with a bank debit that fails, then ended
    # at the end of its period.
    session = c.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": ids["yearly"], "quantity": 1}],
            **CHECKOUT_URLS,
        }
    )
    _pay(run, session.id, "delayed")
    run.helpers.post(f"/checkout/sessions/{session.id}/settle", {"succeeded": False})
    sub_id = c.checkout.sessions.retrieve(session.id).subscription
    with run.flow("canceled at period end"):
        c.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
        run.helpers.post(f"/subscriptions/{sub_id}/advance")


def _portal_configuration(c: Any) -> Any:
    return c.billing_portal.configurations.create(
        params={
            "features": {
                "payment_method_update": {"enabled": True},
                "invoice_history": {"enabled": True},
                "subscription_update": {"enabled": False},
                "subscription_cancel": {"enabled": False},
            },
            "metadata": {"payments_service": "billing_portal"},
        }
    )


def _account_tools(run: Run, ids: dict[str, Any]) -> None:
    """What the service calls besides payments: the Billing Portal and webhook endpoints."""
    c = run.client.v1
    with run.flow("portal configured"):
        config = _portal_configuration(c)
    c.billing_portal.configurations.retrieve(config.id)
    with run.flow("portal configuration updated"):
        c.billing_portal.configurations.update(
            config.id,
            params={
                "features": {"customer_update": {"enabled": True, "allowed_updates": ["email"]}}
            },
        )
    c.billing_portal.configurations.list(params={"active": True, "limit": 10})
    c.billing_portal.sessions.create(
        params={
            "customer": ids["customer"],
            "return_url": "https://shop.test/account",
            "configuration": config.id,
        }
    )
    # Without a configuration, the account's default (saved "in the Dashboard") is used.
    with run.flow("portal opened on the default configuration"):
        c.billing_portal.sessions.create(params={"customer": ids["customer"]})

    endpoint = c.webhook_endpoints.create(
        params={
            "url": "https://shop.test/v1/webhooks/stripe",
            "enabled_events": ["charge.refunded"],
        }
    )
    c.webhook_endpoints.retrieve(endpoint.id)
    c.webhook_endpoints.update(
        endpoint.id, params={"enabled_events": ["charge.refunded", "refund.updated"]}
    )
    c.webhook_endpoints.list(params={"limit": 10})
    c.webhook_endpoints.delete(endpoint.id)


def _events_api(run: Run) -> None:
    c = run.client.v1
    first = c.events.list(params={"limit": 1}).data[0]
    c.events.retrieve(first.id)
    c.events.list(params={"type": "charge.*", "limit": 3})
    c.events.list(params={"types": ["refund.created", "refund.updated"], "limit": 3})
    c.events.list(params={"created": {"gte": first.created - 3600}, "limit": 3})
    c.events.list(params={"delivery_success": True, "limit": 3})


def _all_events(run: Run) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = run.events_page(params)
        events += page["data"]
        if not page["has_more"]:
            return events
        params["starting_after"] = events[-1]["id"]


@pytest.fixture(scope="module")
def run(running_emulator: EmulatorHandle, receiver: WebhookReceiver) -> Iterator[Run]:
    """The whole journey, once for the module's checks."""
    emu = running_emulator
    emu.flush_webhooks()
    emu.reset()
    emu.emulator.webhooks.configure(
        url=receiver.url, secret=WEBHOOK_SECRET, auto_deliver=True, max_attempts=3
    )
    receiver.clear()
    http = RecordingHTTPClient()
    client = stripe.StripeClient(
        API_KEY, base_addresses={"api": emu.base_url}, http_client=http, max_network_retries=0
    )
    helpers = RecordingHelpers(emu.base_url)
    journey = Run(client, http, helpers)
    try:
        ids = _catalog(journey)
        paid = _one_time_checkouts(journey, ids)
        _refunds(journey, ids, paid)
        _disputes(journey, ids)
        _subscriptions(journey, ids)
        _account_tools(journey, ids)
        _events_api(journey)
        journey.calls_by_route = helpers.get("/calls")["routes"]
        helpers.flush()
        journey.events = _all_events(journey)
        journey.deliveries = [d.event() for d in receiver.received()]
        yield journey
    finally:
        helpers.http.close()


# The checks -------------------------------------------------------------------------------


def _report(violations: list[str]) -> str:
    shown = "\n  ".join(violations[:60])
    more = f"\n  … and {len(violations) - 60} more" if len(violations) > 60 else ""
    return f"{len(violations)} violations:\n  {shown}{more}"


def test_the_pinned_versions_agree() -> None:
    # The emulator, the client and the definitions all speak one version
    document = Conformance().document
    assert document["x-api-version"] == API_VERSION == stripe.api_version
    assert document["x-source"] == "stripe@23.1.0"
    assert stripe.VERSION == "16.1.0"


def test_every_answer_matches_the_pinned_definitions(run: Run) -> None:
    # Given every answer of the run (API calls and helper objects)
    check = Conformance()
    violations: list[str] = []
    answers = [a for a in run.http.answers if a.status == 200]
    assert len(answers) > 150

    # When each is checked against its definition
    for answer in answers:
        for found in check.check_object(json.loads(answer.body), expand=answer.expand):
            violations.append(f"{answer.where}: {found}")
    for where, obj in run.helpers.objects:
        violations += [f"{where}: {found}" for found in check.check_object(obj)]

    # Then none breaks it
    assert violations == [], _report(violations)


def test_every_event_and_webhook_matches_the_pinned_definitions(run: Run) -> None:
    check = Conformance()
    assert len(run.events) > 100
    assert sorted(e["id"] for e in run.deliveries) == sorted(e["id"] for e in run.events)

    violations = [
        f"event {event['type']} ({source}): {found}"
        for source, events in (("stored", run.events), ("delivered", run.deliveries))
        for event in events
        for found in check.check_event(event)
    ]

    assert violations == [], _report(violations)


def test_every_event_type_is_one_stripe_python_knows(run: Run) -> None:
    emitted = {e["type"] for e in run.events}

    unknown = emitted - stripe_python_event_types()

    assert unknown == set()
    assert "payment_intent.updated" not in emitted


def _event_types_in_source() -> set[str]:
    """The event types the emulator's code names (string constants that are event types)."""
    known = stripe_python_event_types()
    found: set[str] = set()
    for path in Path(tools.stripe_emulator.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in known:
                found.add(str(node.value))
    return found


def test_every_event_the_emulator_sends_is_sent_in_the_run(run: Run) -> None:
    emitted = {e["type"] for e in run.events}

    never = _event_types_in_source() - emitted

    assert len(emitted) > 40
    assert never == set(), f"add a step that sends {sorted(never)} to this run"


def test_every_route_is_exercised(run: Run) -> None:
    served = {f"{route.method} {route.template}" for route in API_ROUTES}

    untouched = served - {route for route, count in run.calls_by_route.items() if count}

    assert untouched == set(), f"add a step for {sorted(untouched)} to this run"


@pytest.mark.parametrize("flow", sorted(EXPECTED_EVENTS))
def test_each_flow_sends_the_events_stripe_sends(run: Run, flow: str) -> None:
    assert run.events_by_flow[flow] == EXPECTED_EVENTS[flow]


def test_charge_refunds_appear_only_when_expanded(run: Run) -> None:
    # Given the charges the run read, with and without expand[]=refunds
    charges = [
        (a.expand, json.loads(a.body))
        for a in run.http.answers
        if a.status == 200 and a.where.startswith("GET /v1/charges/")
    ]
    expanded = [body for expand, body in charges if "refunds" in expand]
    plain = [body for expand, body in charges if "refunds" not in expand]

    # Then only the expanded ones carry the list, with the charge's refunds in it
    assert plain
    assert all("refunds" not in body for body in plain)
    assert expanded
    assert all(body["refunds"]["object"] == "list" for body in expanded)
    assert any(len(body["refunds"]["data"]) == 2 for body in expanded)
    # And no charge event ever carries it
    assert all(
        "refunds" not in e["data"]["object"] for e in run.events if e["type"].startswith("charge.")
    )
