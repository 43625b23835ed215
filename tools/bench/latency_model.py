"""What a buyer feels: each journey step timed with realistic upstream delays.

Every stand-in delays each call (defaults below, each overridable with ``--delay KIND=MS``):
the Stripe emulator and the Memberstack stand-in at their HTTP servers, the Make.com receiver
and the SQS stub likewise, and the database through :class:`DelayedStore`, a wrapper around the
Postgres store that delays each SQL function call the way one Supabase RPC over HTTPS would.
Each call is recorded (:mod:`tools.local.latency`), so for each request the bench knows which
calls it waited for: those that started during the request and ended before its answer. Calls
still running when it answered are off the critical path and counted apart.

Each figure is also a ratio to its floor, measured in the same run: one Stripe round trip for
a checkout-like step (a bare ``POST /v1/checkout/sessions`` to the delayed emulator), one SQS
send for the webhook (a bare signed ``SendMessage`` to the delayed stub).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from tools.local.latency import Call, CallLog, Latency

# Milliseconds per call, one-way through the stand-in (what a round trip costs from Lambda).
DEFAULT_DELAYS_MS = {
    "stripe": 250.0,
    "memberstack": 150.0,
    "database": 30.0,
    "sqs": 20.0,
    "make": 200.0,
}


@dataclass
class Model:
    """The delayed stand-ins of one run and their shared call log."""

    log: CallLog
    latencies: dict[str, Latency]

    def set(self, enabled: bool) -> None:
        """Delays on (as configured) or off (setup steps run at loopback speed)."""
        for latency in self.latencies.values():
            latency.seconds = latency.configured if enabled else 0.0  # type: ignore[attr-defined]

    @contextmanager
    def off(self) -> Iterator[None]:
        self.set(False)
        try:
            yield
        finally:
            self.set(True)


def build_model(delays_ms: dict[str, float]) -> Model:
    log = CallLog()
    latencies = {}
    for kind, ms in delays_ms.items():
        latency = Latency(kind, ms / 1000, log)
        latency.configured = ms / 1000  # type: ignore[attr-defined]
        latencies[kind] = latency
    return Model(log, latencies)


class DelayedStore:
    """The store, with each SQL function call delayed like one Supabase RPC (PostgREST over
    HTTPS). The delay happens outside the wrapped store's lock, so concurrent calls overlap as
    they would over separate HTTP requests."""

    def __init__(self, inner: Any, latency: Latency) -> None:
        self._inner = inner
        self._latency = latency

    def call(self, function: str, **params: Any) -> Any:
        with self._latency.around(f"rpc {function}"):
            return self._inner.call(function, **params)

    def call_as_member(self, member_id: str, function: str, **params: Any) -> Any:
        with self._latency.around(f"rpc {function} (as member)"):
            return self._inner.call_as_member(member_id, function, **params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def install_delayed_store(latency: Latency) -> None:
    """Make every handler's store a :class:`DelayedStore` (the factory is patched in place)."""
    import payments.adapters.store as store_module

    original = getattr(store_module, "_cached_store", None)
    if original is None or not callable(original):
        raise RuntimeError("payments.adapters.store._cached_store is gone: update the bench")

    @lru_cache(maxsize=1)
    def delayed(settings: Any) -> Any:
        return DelayedStore(original(settings), latency)

    store_module._cached_store = delayed


# --- measuring one request ------------------------------------------------------------------


@dataclass
class Sample:
    wall_ms: float
    waited: Counter[str]
    background: Counter[str]
    names: Counter[str] = field(default_factory=Counter)


def quiet_heap() -> None:
    """Collect, then exempt what the bench process holds (the emulator's objects, the call log,
    moto) from later collections: a full collection of that heap is a pause of the bench's,
    not of a Lambda whose heap is its own, and it would land in some request's figure."""
    gc.collect()
    gc.freeze()


def measure(log: CallLog, request: Callable[[], Any]) -> Sample:
    started = time.perf_counter()
    request()
    ended = time.perf_counter()
    calls: list[Call] = log.started_between(started, ended)
    waited = Counter(c.kind for c in calls if c.ended <= ended)
    background = Counter(c.kind for c in calls if c.ended > ended)
    names = Counter(f"{c.kind}: {_route(c.name)}" for c in calls if c.ended <= ended)
    return Sample((ended - started) * 1000, waited, background, names)


def _route(name: str) -> str:
    # "GET /v1/subscriptions/sub_123" -> "GET /v1/subscriptions/{id}": one name per route.
    parts = [
        "{id}" if "_" in part and any(ch.isdigit() for ch in part) else part
        for part in name.split("/")
    ]
    return "/".join(parts)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(samples: list[Sample]) -> dict[str, Any]:
    walls = [s.wall_ms for s in samples]
    kinds = sorted(
        {k for s in samples for k in s.waited} | {k for s in samples for k in s.background}
    )
    per_kind = {
        kind: {
            "median": float(sorted(s.waited[kind] for s in samples)[len(samples) // 2]),
            "max": max(s.waited[kind] for s in samples),
            "background_median": float(
                sorted(s.background[kind] for s in samples)[len(samples) // 2]
            ),
        }
        for kind in kinds
    }
    names: Counter[str] = Counter()
    for s in samples:
        names.update(s.names)
    return {
        "n": len(samples),
        "p50_ms": percentile(walls, 50),
        "p99_ms": percentile(walls, 99),
        "min_ms": min(walls),
        "max_ms": max(walls),
        "calls": per_kind,
        # Mean number of each call per request, by route: where the waiting goes.
        "calls_by_route": {name: round(count / len(samples), 2) for name, count in names.items()},
    }


# --- the journey steps ----------------------------------------------------------------------


class Journey:
    """Runs each step through the real handlers in this process, as Lambda would."""

    def __init__(self, env: dict[str, str], model: Model, mint: Callable[..., str]) -> None:
        from tools.devserver.lambda_host import FakeLambdaContext

        self.env = env
        self.model = model
        self.mint = mint
        self._context = FakeLambdaContext
        self._ttl = iter(range(3600, 10**9))
        self.stripe_base = env["STRIPE_API_BASE"]
        self.stripe_key = env["STRIPE_SECRET_KEY"]
        self._seen_events: set[str] = set()

    # A new token per request: a click is one request, and a token verified a minute ago by
    # the same container is the exception, not the rule.
    def token(self, member_id: str) -> str:
        return self.mint(member_id, ttl_seconds=next(self._ttl))

    def invoke(
        self,
        function: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        member_id: str,
        route: str | None = None,
        path_parameters: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        from tools.devserver.events import http_event

        module = __import__(f"functions.{function}.app", fromlist=["lambda_handler"])
        event = http_event(
            method=method,
            path=path,
            route_key=f"{method} {route or path}",
            headers=[
                ("content-type", "application/json"),
                ("authorization", f"Bearer {self.token(member_id)}"),
                ("idempotency-key", f"bench-{uuid.uuid4().hex}"),
            ],
            body=json.dumps(body).encode() if body is not None else b"",
            path_parameters=path_parameters,
        )
        result: dict[str, Any] = module.lambda_handler(event, self._context(function, 30))
        if result["statusCode"] >= 300:
            raise RuntimeError(f"{method} {path} answered {result['statusCode']}: {result['body']}")
        answer: dict[str, Any] = json.loads(result["body"])
        return answer

    def checkout(self, member_id: str, product: str = "business_plan_builder") -> dict[str, Any]:
        return self.invoke(
            "create_checkout", "POST", "/v1/checkout/sessions", {"product": product}, member_id
        )

    def pay(self, session_id: str) -> dict[str, Any]:
        import httpx

        answer = httpx.post(
            f"{self.stripe_base}/_emulator/checkout/sessions/{session_id}/pay",
            json={"outcome": "success"},
            timeout=30,
        )
        answer.raise_for_status()
        paid: dict[str, Any] = answer.json()
        return paid

    def deliver_new_events(self) -> int:
        """Hand every event the emulator created since the last call to the worker, oldest
        first, in batches of ten as SQS would."""
        import httpx

        from tools.local.sqs import build_sqs_event

        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = httpx.get(
                f"{self.stripe_base}/v1/events",
                params=params,
                headers={"Authorization": f"Bearer {self.stripe_key}"},
                timeout=30,
            ).json()
            fresh_page = [e for e in page["data"] if e["id"] not in self._seen_events]
            events += fresh_page
            # Newest first: once a page holds an event delivered before, the rest are older.
            if not page.get("has_more") or len(fresh_page) < len(page["data"]):
                break
            params["starting_after"] = page["data"][-1]["id"]
        fresh = list(reversed(events))
        self._seen_events.update(e["id"] for e in fresh)
        for start in range(0, len(fresh), 10):
            chunk = fresh[start : start + 10]
            self.worker(
                build_sqs_event(
                    [sqs_message(json.dumps(e), n) for n, e in enumerate(chunk)],  # type: ignore[misc]
                    "arn:aws:sqs:us-east-1:000000000000:bench",
                )
            )
        return len(fresh)

    def require_customers(self, member_ids: list[str]) -> None:
        """Fail unless each member's Stripe customer is mapped (a returning member's is)."""
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            mapped = {
                row[0]
                for row in conn.execute(
                    "select member_id from customers where member_id = any(%s)", (member_ids,)
                )
            }
        missing = sorted(set(member_ids) - mapped)
        if missing:
            raise RuntimeError(f"returning members without a customer mapping: {missing[:3]}")

    def worker(self, batch: dict[str, Any]) -> None:
        module = __import__("functions.webhook_worker.app", fromlist=["lambda_handler"])
        result = module.lambda_handler(batch, self._context("webhook_worker", 60))
        if result.get("batchItemFailures"):
            raise RuntimeError(f"worker failed messages: {result['batchItemFailures']}")


def sqs_message(body: str, n: int) -> dict[str, Any]:
    return {
        "MessageId": f"m-{uuid.uuid4().hex}",
        "ReceiptHandle": f"r-{n}",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
        "MessageAttributes": {
            "stripe_event_id": {"DataType": "String", "StringValue": json.loads(body)["id"]}
        },
        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
    }


def stripe_floor(env: dict[str, str], log: CallLog, iterations: int) -> dict[str, Any]:
    """One bare Stripe round trip: the session create a checkout cannot do without."""
    import stripe

    client = stripe.StripeClient(
        env["STRIPE_SECRET_KEY"], base_addresses={"api": env["STRIPE_API_BASE"]}
    )
    from payments.catalog import load_catalog

    lookup_key = load_catalog().get("business_plan_builder", mode="payment").lookup_key
    price = client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data[0]

    def create() -> None:
        client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": "https://site.example/f5?session_id={CHECKOUT_SESSION_ID}",
                "cancel_url": "https://site.example/f4",
            },
            options={"idempotency_key": uuid.uuid4().hex},
        )

    create()  # the connection is open, as the service's is
    return summarise([measure(log, create) for _ in range(iterations)])


def sqs_floor(queue_url: str, endpoint: str, log: CallLog, iterations: int) -> dict[str, Any]:
    """One bare signed SendMessage with the webhook's own client."""
    from payments.adapters.queue import EventQueue, json_sqs_client

    queue = EventQueue(queue_url, json_sqs_client(queue_url, endpoint))

    def send() -> None:
        queue.send_event('{"id": "evt_floor"}', event_id="evt_floor", event_type="bench")

    send()
    return summarise([measure(log, send) for _ in range(iterations)])


def run_journey(
    env: dict[str, str],
    model: Model,
    mint: Callable[..., str],
    iterations: int,
    webhook_iterations: int,
    sqs_stub: Any,
    worker_batches: int,
) -> dict[str, Any]:
    """Every step of the issue's list, with delays on; setup steps run with delays off."""
    from tools.bench.__main__ import journey_events, padded_event, sign

    journey = Journey(env, model, mint)
    log = model.log
    results: dict[str, Any] = {}

    with model.off():
        # Warm the container: catalog prices, signing keys, connections (a warm Lambda).
        journey.checkout("mem_bench_warmup")
        # Returning members: each paid for one track before, so Stripe knows them and we hold
        # their customer (mapped when that session completed). Each is measured buying another
        # track, once: clicking twice would be handed the open session again, no Stripe call.
        returning = [f"mem_bench_returning_{i:04d}" for i in range(iterations)]
        for member_id in returning:
            journey.pay(journey.checkout(member_id, "social_media_email_campaign")["id"])
        journey.deliver_new_events()
        journey.require_customers(returning)
        # Paid one-time purchases to switch (one per member: a second switch of the same
        # purchase would be handed the open session again), and a subscription to change.
        switchers = [f"mem_bench_switcher_{i:04d}" for i in range(iterations)]
        switched = [
            journey.pay(journey.checkout(member_id)["id"])["payment_intent"]
            for member_id in switchers
        ]
        subscription_session = journey.invoke(
            "subscriptions",
            "POST",
            "/v1/subscriptions",
            {"product": "growth_monthly"},
            "mem_bench_subscriber",
        )
        subscription = journey.pay(subscription_session["id"])["subscription"]
        journey.deliver_new_events()

    quiet_heap()
    floors = {
        "stripe_round_trip": stripe_floor(env, log, max(10, iterations // 2)),
        "sqs_send": sqs_floor(
            f"{sqs_stub.url}/000000000000/bench-webhook", sqs_stub.url, log, webhook_iterations
        ),
    }
    results["floors"] = floors

    def step(name: str, request: Callable[[int], Any], n: int = iterations) -> None:
        print(f"  {name}…", flush=True)
        quiet_heap()
        results[name] = summarise([measure(log, partial(request, i)) for i in range(n)])
        time.sleep(0.5)  # let calls left running in the background finish

    step("checkout_returning_member", lambda i: journey.checkout(returning[i]))
    step("checkout_first_time_member", lambda i: journey.checkout(f"mem_bench_new_{i:04d}"))
    step(
        "product_switch",
        lambda i: journey.invoke(
            "refunds",
            "POST",
            "/v1/purchases/switch",
            {"payment_intent": switched[i], "product": "website_audit_feedback"},
            switchers[i],
        ),
    )

    plans = ["scale_monthly", "growth_monthly"]
    previews: dict[int, dict[str, Any]] = {}

    def preview(i: int) -> None:
        previews[i] = journey.invoke(
            "subscriptions",
            "POST",
            f"/v1/subscriptions/{subscription}/preview-change",
            {"product": plans[i % 2]},
            "mem_bench_subscriber",
            route="/v1/subscriptions/{subscription_id}/preview-change",
            path_parameters={"subscription_id": subscription},
        )

    def change(i: int) -> None:
        journey.invoke(
            "subscriptions",
            "POST",
            f"/v1/subscriptions/{subscription}/change",
            {"product": plans[i % 2], "quote": previews[i]["quote"]},
            "mem_bench_subscriber",
            route="/v1/subscriptions/{subscription_id}/change",
            path_parameters={"subscription_id": subscription},
        )

    # Preview then change, alternately, as a member does: each change moves the plan.
    preview_samples: list[Sample] = []
    change_samples: list[Sample] = []
    print("  plan_change_preview / plan_change…", flush=True)
    quiet_heap()
    for i in range(iterations):
        preview_samples.append(measure(log, partial(preview, i)))
        change_samples.append(measure(log, partial(change, i)))
    results["plan_change_preview"] = summarise(preview_samples)
    results["plan_change"] = summarise(change_samples)
    time.sleep(0.5)

    # The webhook's acknowledgement, in front of the delayed SQS stub.
    print("  webhook_ack…", flush=True)
    handler = __import__("functions.webhook.app", fromlist=["lambda_handler"]).lambda_handler
    from tools.devserver.events import http_event
    from tools.devserver.lambda_host import FakeLambdaContext

    previous = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "WEBHOOK_QUEUE_URL")}
    os.environ["AWS_ENDPOINT_URL"] = sqs_stub.url
    os.environ["WEBHOOK_QUEUE_URL"] = f"{sqs_stub.url}/000000000000/bench-webhook"
    try:
        body = padded_event(2 * 1024)

        def acknowledge() -> None:
            event = http_event(
                method="POST",
                path="/v1/webhooks/stripe",
                route_key="POST /v1/webhooks/stripe",
                headers=[("content-type", "application/json"), ("stripe-signature", sign(body))],
                body=body.encode(),
            )
            result = handler(event, FakeLambdaContext("webhook"))
            if result["statusCode"] != 200:
                raise RuntimeError(f"webhook answered {result['statusCode']}")

        acknowledge()
        quiet_heap()
        results["webhook_ack"] = summarise(
            [measure(log, acknowledge) for _ in range(webhook_iterations)]
        )
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    # A worker batch: ten deliveries of paid purchases, as SQS hands them to the worker.
    print("  worker_batch…", flush=True)
    bodies = journey_events(worker_batches * 10 // 3 + 1)[: worker_batches * 10]
    random.shuffle(bodies)
    batches = [build_batch(bodies[start : start + 10]) for start in range(0, len(bodies), 10)]
    quiet_heap()
    results["worker_batch"] = summarise([measure(log, partial(journey.worker, b)) for b in batches])
    return results


def build_batch(bodies: list[str]) -> dict[str, Any]:
    from tools.local.sqs import build_sqs_event

    return build_sqs_event(
        [sqs_message(body, n) for n, body in enumerate(bodies)],  # type: ignore[misc]
        "arn:aws:sqs:us-east-1:000000000000:bench",
    )
