"""Fixtures: one emulator per test session, reset before each test, a local webhook receiver,
and the real stripe client pointed at the emulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe

from tools.stripe_emulator import EmulatorHandle, start_emulator

API_KEY = "sk_test_emulator"
WEBHOOK_SECRET = "whsec_test_emulator_secret"


@dataclass
class Delivery:
    """One webhook POST the receiver got."""

    headers: dict[str, str]
    body: bytes

    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookReceiver:
    """A tiny webhook endpoint that records what it receives and answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.deliveries.append(Delivery(dict(self.headers.items()), body))
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def types(self) -> list[str]:
        return [d.event()["type"] for d in self.received()]

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.status = 200

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Helpers:
    """Calls to the emulator's ``/_emulator`` test helper API."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.post(f"/_emulator{path}", json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str) -> Any:
        response = self.http.get(f"/_emulator{path}")
        assert response.status_code == 200, response.text
        return response.json()

    def flush(self) -> dict[str, Any]:
        result: dict[str, Any] = self.post("/webhooks/flush")
        assert result["drained"], result
        return result


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def running_emulator(receiver: WebhookReceiver) -> Iterator[EmulatorHandle]:
    with start_emulator(
        port=0, webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET, webhook_retry_backoff=0.01
    ) as handle:
        yield handle


@pytest.fixture
def emu(running_emulator: EmulatorHandle, receiver: WebhookReceiver) -> EmulatorHandle:
    """The shared emulator, emptied and with the default webhook endpoint, for one test."""
    running_emulator.flush_webhooks()
    running_emulator.reset()
    running_emulator.emulator.webhooks.configure(
        url=receiver.url, secret=WEBHOOK_SECRET, auto_deliver=True, max_attempts=3
    )
    receiver.clear()
    return running_emulator


@pytest.fixture
def client(emu: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.base_url}, max_network_retries=0)


@pytest.fixture
def helpers(emu: EmulatorHandle) -> Iterator[Helpers]:
    h = Helpers(emu.base_url)
    yield h
    h.http.close()


# Builders shared by the test modules -----------------------------------------------------


def one_time_price(client: stripe.StripeClient, amount: int = 9900, name: str = "Pro pack") -> Any:
    product = client.v1.products.create(params={"name": name})
    return client.v1.prices.create(
        params={"product": product.id, "currency": "usd", "unit_amount": amount}
    )


def monthly_price(client: stripe.StripeClient, amount: int = 3000, name: str = "Pro plan") -> Any:
    product = client.v1.products.create(params={"name": name})
    return client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
        }
    )


def paid_payment(
    client: stripe.StripeClient, helpers: Helpers, amount: int = 9900
) -> tuple[Any, Any]:
    """A completed payment-mode session and its succeeded payment intent."""
    price = one_time_price(client, amount)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://shop.test/ok?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://shop.test/cancel",
            "payment_intent_data": {"metadata": {"order_id": "ord_1"}},
        }
    )
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "success"})
    session = client.v1.checkout.sessions.retrieve(session.id)
    intent = client.v1.payment_intents.retrieve(session.payment_intent)
    return session, intent


def subscribed(client: stripe.StripeClient, helpers: Helpers, amount: int = 3000) -> Any:
    """An active subscription bought through a subscription-mode session."""
    price = monthly_price(client, amount)
    customer = client.v1.customers.create(params={"email": "sub@example.com"})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://shop.test/ok",
            "subscription_data": {"metadata": {"user_id": "u_42"}},
        }
    )
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "success"})
    session = client.v1.checkout.sessions.retrieve(session.id)
    return client.v1.subscriptions.retrieve(session.subscription)
