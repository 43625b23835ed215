"""Self-healing, measured: one seeded journey run twice, cleanly and on a bad day, then compared.

The journey (members buying, declined, refunded by an admin, switching tracks, subscribing,
renewing or failing to, cancelling) runs once with every Stripe event delivered at once to a
working service. It runs again, from the same seed on a fresh database and emulator, with:

* a share of Stripe's deliveries **dropped** entirely (the endpoint was down; Stripe gave up);
* **Make.com down** for a long stretch of the journey;
* the worker's **Stripe refunds failing** for a while (switch refunds, duplicate refunds);

and nobody doing anything about it: no redrive, no recovery command. Then the reconciler runs,
time compressed (its minimum ages set to 0), until a run finds nothing left to heal.

The two final states must be equal: purchases, refunds, subscriptions, the documents Make.com
accepted and the payment_logs effects, compared per member and product (ids differ between the
runs). The figures: deliveries dropped, events healed, dispatches drained, and how many
reconcile runs it took.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from payments.adapters.make import MakeWebhook
from payments.adapters.postgres_store import PostgresStore
from payments.adapters.stripe_service import StripeService
from payments.errors import UpstreamUnavailable
from payments.models import IssuedRefund
from payments.reconcile import ReconcilePolicy, ReconcilePorts, run_reconcile
from payments.webhook_processing import WorkerPorts, process_event_batch
from tools.local.make_receiver import MakeReceiverServer
from tools.reliability.money_model import PLANS, TRACKS, call

INSTANT = ReconcilePolicy(min_dispatch_age_seconds=0, min_event_age_seconds=0, refund_age_seconds=0)
MAX_RECONCILE_RUNS = 10


@dataclass(frozen=True)
class HealingFaults:
    drop_rate: float = 0.3
    # Make.com is down for this share of the journey's actions, from its first third on.
    make_outage: float = 0.5
    # The worker's first refunds fail with Stripe unavailable.
    refund_failures: int = 3


@dataclass
class HealingFigures:
    actions: int = 0
    events: int = 0
    deliveries_dropped: int = 0
    events_healed: int = 0
    dispatches_drained: int = 0
    reconcile_runs_to_heal: int = 0
    differences: list[str] = field(default_factory=list)


class _FlakyRefunds:
    """The worker's Stripe, whose first ``failures`` refunds fail as an outage would."""

    def __init__(self, inner: StripeService, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def create_refund(self, payment_intent: str, **kw: Any) -> IssuedRefund:
        if self.failures > 0:
            self.failures -= 1
            raise UpstreamUnavailable("Stripe is unavailable.", code="stripe_unavailable")
        return self._inner.create_refund(payment_intent, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class HealingStack:
    """One run's local stack: a database, an emulator (in this process), a Make.com receiver
    and a member token minter; the handlers' environment points at them (the caller's job)."""

    database_url: str
    emulator: Any  # EmulatorHandle
    stripe_key: str
    make: MakeReceiverServer
    mint_token: Any
    admin_id: str


class _Run:
    def __init__(self, stack: HealingStack, seed: int, faults: HealingFaults | None) -> None:
        self.stack = stack
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self.faults = faults
        self.members = [f"mem_h{uuid.uuid4().hex[:10]}" for _ in range(3)]
        self.tokens = {m: stack.mint_token(m) for m in [*self.members, stack.admin_id]}
        self.figures = HealingFigures()
        stripe = StripeService(
            stack.stripe_key, api_base=stack.emulator.base_url, retry_base_seconds=0.0
        )
        self.refunds = _FlakyRefunds(stripe, faults.refund_failures if faults else 0)
        self.worker = WorkerPorts(
            store=PostgresStore(stack.database_url),
            make=MakeWebhook(stack.make.url, stack.make.api_key, max_retries=0),
            refunds=lambda: self.refunds,
            subscriptions=lambda: stripe,
            livemode=False,
        )
        self.stripe = stripe
        self.captured: list[dict[str, Any]] = []
        self.sessions: list[tuple[str, str]] = []  # (member, session id)
        store = stack.emulator.emulator.store
        store.event_listeners.append(self._capture)

    def _capture(self, event: dict[str, Any]) -> None:
        self.captured.append(copy.deepcopy(event))

    # --- the journey -----------------------------------------------------------------------

    def _token(self, member: str) -> str:
        return str(self.tokens[member])

    def _pay(self, session_id: str, outcome: str) -> None:
        import httpx

        httpx.post(
            f"{self.stack.emulator.base_url}/_emulator/checkout/sessions/{session_id}/pay",
            json={"outcome": outcome},
            timeout=30,
        )

    def _paid_intents(self, member: str) -> list[str]:
        store = self.stack.emulator.emulator.store
        return [
            p["id"]
            for p in reversed(store.all("payment_intent"))
            if (p.get("metadata") or {}).get("member_id") == member and p["status"] == "succeeded"
        ]

    def _subscription(self, member: str) -> str | None:
        store = self.stack.emulator.emulator.store
        live = [
            s["id"]
            for s in store.all("subscription")
            if (s.get("metadata") or {}).get("member_id") == member
            and s["status"] in ("active", "past_due")
        ]
        return live[0] if live else None

    def purchases(self) -> list[tuple[int, str, str | None]]:
        """Phase 1: each member buys one to three distinct tracks (some declined first) and
        may subscribe to one plan. Distinct, so that no decision depends on how far our tables
        trail Stripe: on a bad day they trail it, and the journey must stay the same."""
        plan: list[tuple[int, str, str | None]] = []
        for m in range(len(self.members)):
            tracks = self.rng.sample(TRACKS, self.rng.randint(1, len(TRACKS)))
            plan += [(m, track, self.rng.choice(["success", "success", "decline"]))
                     for track in tracks]  # fmt: skip
            if self.rng.random() < 0.6:
                plan.append((m, "subscribe", self.rng.choice(PLANS)))
        return plan

    def buy(self, m: int, what: str, detail: str | None, index: int) -> None:
        member = self.members[m]
        if what == "subscribe":
            status, body = call(
                "subscriptions", "POST", "/v1/subscriptions", token=self._token(member),
                body={"product": detail}, headers={"Idempotency-Key": f"h-{index}"},
            )  # fmt: skip
            outcome = "success"
        else:
            status, body = call(
                "create_checkout", "POST", "/v1/checkout/sessions", token=self._token(member),
                body={"product": what}, headers={"Idempotency-Key": f"h-{index}"},
            )  # fmt: skip
            outcome = detail or "success"
        if status == 201:
            self._pay(body["id"], outcome)

    def follow_up(self, m: int, index: int) -> None:
        """Phase 2, once our tables caught up: an admin refund or a switch of one purchase,
        a renewal (paid or failed) and maybe a cancellation of the plan."""
        member = self.members[m]
        paid = self._paid_intents(member)
        choice = self.rng.randrange(1000)
        if paid and choice % 3 == 0:
            owned = {
                (p.get("metadata") or {}).get("product")
                for p in self.stack.emulator.emulator.store.all("payment_intent")
                if p["id"] in paid
            }
            free = [t for t in TRACKS if t not in owned]
            if free:
                status, body = call(
                    "refunds", "POST", "/v1/purchases/switch", token=self._token(member),
                    body={"payment_intent": paid[0], "product": free[choice % len(free)]},
                    headers={"Idempotency-Key": f"h-{index}"},
                )  # fmt: skip
                if status == 201:
                    self._pay(body["id"], "success")
        elif paid:
            amount = [None, 1000, 2500][choice % 3]
            payload: dict[str, Any] = {
                "payment_intent": paid[-1],
                "reason": "requested_by_customer",
            }
            if amount:
                payload["amount"] = amount
            call("refunds", "POST", "/v1/refunds", token=self._token(self.stack.admin_id),
                 body=payload, headers={"Idempotency-Key": f"h-{index}"})  # fmt: skip
        sub = self._subscription(member)
        if sub:
            import httpx

            httpx.post(
                f"{self.stack.emulator.base_url}/_emulator/subscriptions/{sub}/advance",
                json={"payment": "decline" if choice % 4 == 0 else "success"},
                timeout=30,
            )
            if choice % 5 == 0:
                call("subscriptions", "POST", f"/v1/subscriptions/{sub}/cancel",
                     token=self._token(member), body={"at_period_end": False})  # fmt: skip

    def _deliver(self, index: int, total: int) -> None:
        # Events the worker's own Stripe calls create while it works (a refund's) are sent
        # by Stripe at once too: keep delivering until none is left.
        while self.captured:
            self._deliver_once(index, total)

    def _deliver_once(self, index: int, total: int) -> None:
        events, self.captured = self.captured, []
        self.figures.events += len(events)
        make_down = (
            self.faults is not None
            and total > 0
            and total // 3 <= index < total // 3 + max(1, int(total * self.faults.make_outage))
        )
        self.stack.make.inject_fault(503, 10_000 if make_down else 0)
        delivered = []
        for event in events:
            dropping = self.faults is not None and total > 0
            if dropping and self.fault_rng.random() < self.faults.drop_rate:  # type: ignore[union-attr]
                self.figures.deliveries_dropped += 1
                continue
            delivered.append(event)
        for start in range(0, len(delivered), 10):
            batch = delivered[start : start + 10]
            # A message that fails goes back to SQS and, after five receives, to the DLQ,
            # where nobody looks: here it is simply not retried.
            process_event_batch({e["id"]: json.dumps(e) for e in batch}, self.worker)

    def heal(self) -> None:
        self.stack.make.inject_fault(503, 0)
        ports = ReconcilePorts(
            store=self.worker.store, worker=self.worker, stripe=lambda: self.stripe
        )
        store = self.stack.emulator.emulator.store
        for run in range(1, MAX_RECONCILE_RUNS + 1):
            report = run_reconcile(ports, policy=INSTANT, now=store.now)
            self.figures.events_healed += report.events_healed
            self.figures.dispatches_drained += report.dispatches_drained
            # Events the worker's own calls created while healing (a refund's events) are
            # Stripe's to deliver: they go out like any other.
            self._deliver(0, 0)
            if (
                report.events_healed == 0
                and report.dispatches_drained == 0
                and report.dispatches_failed == 0
                and not report.stuck
            ):
                self.figures.reconcile_runs_to_heal += run - 1
                return
        self.figures.differences.append(f"still healing after {MAX_RECONCILE_RUNS} runs")

    # --- the state, per member and product -------------------------------------------------

    def state(self) -> dict[str, Any]:
        alias = {m: f"member{i}" for i, m in enumerate(self.members)}
        with psycopg.connect(self.stack.database_url) as conn:

            def rows(query: str) -> list[tuple[Any, ...]]:
                return [
                    tuple(alias.get(v, v) if isinstance(v, str) else v for v in row)
                    for row in conn.execute(query).fetchall()
                ]

            purchases = rows(
                "select member_id, product, mode, payment_status, status, amount, amount_refunded,"
                " duplicate from purchases where payment_status <> 'open'"
            )
            refunds = rows(
                "select r.member_id, coalesce(p.product, i.product), r.amount, r.status, r.reason,"
                " r.requested_by is not null from refunds r"
                " left join purchases p on p.payment_intent_id = r.payment_intent_id"
                " left join subscription_invoices i on i.payment_intent_id = r.payment_intent_id"
            )
            subscriptions = rows("select member_id, product, status from subscriptions")
            logs = Counter(
                r[0]
                for r in conn.execute(
                    "select event_type from payment_logs where stripe_event_id not like"
                    " 'evt_reconcile_%' or stripe_event_id is null"
                ).fetchall()
            )
        make = Counter(
            (p.get("kind"), alias[str(p["member_id"])], p.get("product"))
            for p in list(self.stack.make.received)
            if isinstance(p, dict) and p.get("member_id") in alias
        )
        return {
            "purchases": sorted(purchases, key=repr),
            "refunds": sorted(refunds, key=repr),
            "subscriptions": sorted(subscriptions, key=repr),
            "make": sorted(make.items(), key=repr),
            "payment_logs": sorted(logs.items()),
        }

    def close(self) -> None:
        self.stack.emulator.emulator.store.event_listeners.remove(self._capture)
        self.worker.store.close()  # type: ignore[attr-defined]


def run_journey(
    stack: HealingStack, seed: int, faults: HealingFaults | None
) -> tuple[dict[str, Any], HealingFigures]:
    """The journey from ``seed``, cleanly (``faults`` None) or on a bad day, then healed."""
    run = _Run(stack, seed, faults)
    try:
        steps = run.purchases()
        total = len(steps) + len(run.members)
        for index, (m, what, detail) in enumerate(steps):
            run.buy(m, what, detail, index)
            run.figures.actions += 1
            run._deliver(index, total)
        run.heal()
        for m in range(len(run.members)):
            index = len(steps) + m
            run.follow_up(m, index)
            run.figures.actions += 1
            run._deliver(index, total)
        run.heal()
        return run.state(), run.figures
    finally:
        run.close()


def compare(clean: dict[str, Any], healed: dict[str, Any]) -> list[str]:
    """What differs between the two final states, table by table."""
    return [
        f"{table}: clean {clean[table]} != healed {healed[table]}"
        for table in clean
        if clean[table] != healed[table]
    ]
