"""``tools.recover_events`` feeds the worker events as the webhook endpoint would carry them:
at the pinned API version, whatever version Stripe lists them at."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from tests.stack import STRIPE_KEY, WEBHOOK_SECRET
from tools import recover_events
from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def emu() -> Iterator[EmulatorHandle]:
    handle = start_emulator(
        port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
    )
    # Every delivery fails: the endpoint is down.
    handle.emulator.webhooks.configure(
        url="http://127.0.0.1:9/down", auto_deliver=True, max_attempts=1
    )
    yield handle
    handle.stop()


class QueueStandIn:
    """The webhook queue, keeping what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_event(self, body: str, *, event_id: str, event_type: str) -> None:
        self.sent.append(json.loads(body))


def test_an_undelivered_event_listed_at_another_api_version_is_queued_at_ours(
    emu: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a paid checkout whose deliveries all failed, listed at the account's older version
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emu.base_url})
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 9900, "product_data": {"name": "plan"}}
    )
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://shop.test/f5",
            "cancel_url": "https://shop.test/f4",
            "metadata": {"member_id": "mem_recover", "product": "business_plan_builder"},
        }
    )
    status, _ = emu.emulator.helper(
        "POST", f"/_emulator/checkout/sessions/{session.id}/pay", {"outcome": "success"}
    )
    assert status == 200
    assert emu.flush_webhooks()
    for event in emu.emulator.store.all("event"):
        if event["type"] == "checkout.session.completed":
            event["api_version"] = "2020-08-27"
            event["data"] = {"object": {"object": "checkout.session", "id": session.id}}

    # When the operator recovers the undelivered events
    queue = QueueStandIn()
    recover_events.recover(client, queue, days=1)  # type: ignore[arg-type]

    # Then the completion is queued under its own id, at our version, with the whole session
    [completed] = [e for e in queue.sent if e["type"] == "checkout.session.completed"]
    assert completed["api_version"] == stripe.api_version
    assert completed["data"]["object"]["amount_total"] == 9900
    assert completed["data"]["object"]["payment_status"] == "paid"
    assert "re-read at API version" in capsys.readouterr().out
