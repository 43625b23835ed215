"""Helpers for the subscription tests: a member's subscription bought through the service and
paid on the emulator, and the emulator's events fed to the real webhook worker."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.fakes.lambda_context import FakeLambdaContext
from tests.stack import STRIPE_KEY, Answer, Stack, api
from tools.local.sqs import build_sqs_event

QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:payments-webhook-events-test"
STRIPE_AUTH = {"Authorization": f"Bearer {STRIPE_KEY}"}


@pytest.fixture
def worker_env(stack: Stack, service_env: pytest.MonkeyPatch) -> Iterator[None]:
    """The webhook worker on the service's environment (Make.com is the stack's receiver: a
    paid subscription checkout and a failed renewal are dispatched to it)."""
    from functions.webhook_worker import app as worker_app

    worker_app._ports.cache_clear()
    yield
    worker_app._ports.cache_clear()


@pytest.fixture
def member() -> str:
    """A member new to Stripe too: the emulator lives for the whole session."""
    return f"mem_{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Subscribed:
    member: str
    subscription: str
    customer: str


def stripe_get(stack: Stack, path: str, **params: Any) -> Any:
    return stack.emulator_call("GET", path, headers=STRIPE_AUTH, params=params)


def stripe_subscription(stack: Stack, subscription_id: str) -> Any:
    return stripe_get(stack, f"/v1/subscriptions/{subscription_id}")


def customer_events(stack: Stack, customer: str) -> list[dict[str, Any]]:
    """Every event about ``customer``'s objects, oldest first (the emulator lists newest first)."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["starting_after"] = after
        page = stripe_get(stack, "/v1/events", **params)
        found.extend(page["data"])
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    return [e for e in reversed(found) if e["data"]["object"].get("customer") == customer]


def sqs_event(stripe_events: list[dict[str, Any]]) -> dict[str, Any]:
    """The SQS event Lambda hands the worker for these events, as queued by the webhook."""
    messages = []
    for event in stripe_events:
        body = json.dumps(event)
        messages.append(
            {
                "MessageId": str(uuid.uuid4()),
                "ReceiptHandle": uuid.uuid4().hex,
                "Body": body,
                "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
                "Attributes": {"ApproximateReceiveCount": "1"},
                "MessageAttributes": {
                    "stripe_event_id": {"DataType": "String", "StringValue": event["id"]},
                },
            }
        )
    return build_sqs_event(messages, QUEUE_ARN)  # type: ignore[arg-type]


def run_worker(stripe_events: list[dict[str, Any]]) -> None:
    """Hand ``stripe_events`` to the worker Lambda, ten per batch like the SQS trigger."""
    from functions.webhook_worker import app as worker_app

    for start in range(0, len(stripe_events), 10):
        batch = stripe_events[start : start + 10]
        response = worker_app.lambda_handler(
            sqs_event(batch), FakeLambdaContext("WebhookWorkerFunction", timeout_seconds=30)
        )
        assert response == {"batchItemFailures": []}


def deliver(stack: Stack, customer: str) -> None:
    """Feed the worker everything Stripe said about this customer so far (duplicates are no-ops)."""
    run_worker(customer_events(stack, customer))


def call(
    stack: Stack,
    member: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    return api(
        "subscriptions",
        method,
        path,
        body=body,
        token=stack.token(member),
        headers=headers,
    )


def act(
    stack: Stack,
    member: str,
    subscription: str,
    action: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    return call(stack, member, "POST", f"/v1/subscriptions/{subscription}/{action}", body, headers)


def subscribe(stack: Stack, member: str, product: str = "growth_monthly") -> Subscribed:
    """Buy ``product`` through the service, pay it on the emulator and let the worker record it."""
    answer = call(stack, member, "POST", "/v1/subscriptions", {"product": product})
    assert answer.status == 201, answer.body
    session = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{answer.body['id']}/pay", json={"outcome": "success"}
    )
    deliver(stack, session["customer"])
    return Subscribed(member, session["subscription"], session["customer"])


def subscription_row(db: str, subscription_id: str) -> dict[str, Any] | None:
    with psycopg.connect(db) as conn:
        cur = conn.execute(
            "select product, status, cancel_at_period_end, pause_behavior, member_id"
            " from subscriptions where id = %s",
            (subscription_id,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def action_logs(db: str, subscription_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "select event_type, user_id, status, metadata from payment_logs"
            " where stripe_object_id = %s and event_type like 'subscription.%%' order by id",
            (subscription_id,),
        ).fetchall()
