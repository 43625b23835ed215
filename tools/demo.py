"""``make demo``: the whole payment journey, scripted and printed, against a local stack.

Starts the same stack as ``make dev`` in this process, on free ports and on a database of its
own (never the dev one): a fresh ``payments_demo`` database on an embedded Postgres under
``.local/pgdemo``, or ``DEMO_DATABASE_URL`` when set. Stripe emulator, Memberstack stand-in,
Make.com receiver, local SQS with the worker and the API live as long as the run. Then it
walks the journey a member and an admin
take: prices, checkout, paying on the emulator, the signed webhook, the worker's payment log,
the Make.com ``add_project`` payload, a refund, a subscription's life, and a retention purge
dry run. Each step prints ✓ or ✗; a feature that is not deployed yet is a ✗ that says
"not available". The exit status is 1 unless every step happened. Everything stops at the end.

Background output (request lines, JSON logs of the handlers) goes to ``.local/demo.log``;
``--verbose`` shows it inline instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import psycopg

from tools.db import embedded_postgres, local_state_dir
from tools.devserver.__main__ import SERVICE_VARIABLES
from tools.devserver.routes import ROOT

LOG_FILE = local_state_dir() / "demo.log"
DEMO_DATABASE = "payments_demo"
WAIT_SECONDS = 20.0
LOCAL_PORT_VARIABLES = (
    "STRIPE_EMULATOR_PORT",
    "MEMBERSTACK_STANDIN_PORT",
    "MAKE_RECEIVER_PORT",
    "LOCAL_SQS_PORT",
)


class StepFailed(Exception):
    """The step ran and what it checks did not happen."""


class NotAvailable(StepFailed):
    """The feature the step needs is not part of this service yet."""


@dataclass
class Outcome:
    title: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Journey:
    """The steps, sharing what earlier steps produced (ids, tokens)."""

    api: str
    emulator: str
    make_receiver: str
    database_url: str
    stripe_key: str
    admin_id: str
    invoke: Callable[[str, dict[str, Any], str], Any]
    routes: Callable[[str, str], bool]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    member_id: str = field(default_factory=lambda: f"mem_demo_{uuid.uuid4().hex[:8]}")
    found: dict[str, Any] = field(default_factory=dict)

    # ---- helpers ----------------------------------------------------------------------------

    def _token(self, member_id: str) -> str:
        answer = self.http.post(
            f"{os.environ['MEMBERSTACK_API_BASE']}/_standin/tokens", json={"member_id": member_id}
        )
        answer.raise_for_status()
        token: str = answer.json()["token"]
        return token

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        key: str | None = None,
        route: str | None = None,
    ) -> httpx.Response:
        if not self.routes(method, route or path):
            raise NotAvailable(f"not available: {method} {route or path} is not in template.yaml")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key:
            headers["Idempotency-Key"] = key
        return self.http.request(method, f"{self.api}{path}", json=body, headers=headers)

    @staticmethod
    def _expect(answer: httpx.Response, *statuses: int) -> Any:
        if answer.status_code not in statuses:
            raise StepFailed(
                f"{answer.request.method} {answer.request.url.path} answered "
                f"{answer.status_code}: {_error_text(answer)}"
            )
        return answer.json()

    def _member_token(self) -> str:
        if "token" not in self.found:
            self.found["token"] = self._token(self.member_id)
        token: str = self.found["token"]
        return token

    def _need(self, name: str) -> Any:
        if name not in self.found:
            raise StepFailed(f"skipped: needs {name.replace('_', ' ')} from an earlier step")
        return self.found[name]

    def _flush_webhooks(self) -> dict[str, Any]:
        answer = self.http.post(f"{self.emulator}/_emulator/webhooks/flush", json={"timeout": 20})
        answer.raise_for_status()
        summary: dict[str, Any] = answer.json()
        return summary

    def _pay(self, session_id: str, outcome: str = "success") -> dict[str, Any]:
        answer = self.http.post(
            f"{self.emulator}/_emulator/checkout/sessions/{session_id}/pay",
            json={"outcome": outcome},
        )
        session: dict[str, Any] = self._expect(answer, 200)
        return session

    def _log_rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    # ---- steps --------------------------------------------------------------------------------

    def prices(self) -> str:
        from payments.catalog import load_catalog

        shown = self._expect(self._call("GET", "/v1/pricing"), 200)["products"]
        expected = load_catalog().public_view()["products"]
        if shown != expected:
            raise StepFailed("GET /v1/pricing differs from shared/payments/catalog.json")
        one_time = [p["display_price"] for p in shown if p["mode"] == "payment"]
        plans = [p["display_price"] for p in shown if p["mode"] == "subscription"]
        return f"{len(shown)} products, one-time {' / '.join(one_time)}, plans {' / '.join(plans)}"

    def checkout(self) -> str:
        token, key = self._member_token(), str(uuid.uuid4())
        body = {"product": "business_plan_builder"}
        first = self._expect(
            self._call("POST", "/v1/checkout/sessions", token=token, body=body, key=key), 201
        )
        # A double click sends the same Idempotency-Key: it must not open a second checkout.
        again = self._expect(
            self._call("POST", "/v1/checkout/sessions", token=token, body=body, key=key), 201
        )
        if again["id"] != first["id"]:
            raise StepFailed("the same Idempotency-Key opened a second Checkout Session")
        self.found["session_id"] = first["id"]
        return f"{first['id'][:24]}… for {self.member_id}; a repeated click got the same session"

    def pay(self) -> str:
        session = self._pay(self._need("session_id"))
        if session.get("payment_status") != "paid":
            raise StepFailed(f"session is {session.get('payment_status')}, not paid")
        self.found["payment_intent"] = session["payment_intent"]
        return f"card 4242… paid {session['amount_total'] / 100:.2f} {session['currency']}"

    def webhook(self) -> str:
        session_id = self._need("session_id")
        self._flush_webhooks()
        events = self.http.get(
            f"{self.emulator}/v1/events",
            params={"type": "checkout.session.completed", "limit": 20},
            headers={"Authorization": f"Bearer {self.stripe_key}"},
        ).json()["data"]
        event = next((e for e in events if e["data"]["object"]["id"] == session_id), None)
        if event is None:
            raise StepFailed("the emulator sent no checkout.session.completed for the session")
        attempts = self.http.get(
            f"{self.emulator}/_emulator/events/{event['id']}/deliveries"
        ).json()["attempts"]
        statuses = [a["status"] for a in attempts]
        if 200 not in statuses:
            raise StepFailed(f"POST /v1/webhooks/stripe answered {statuses} for {event['id']}")
        self.found["event_id"] = event["id"]
        return f"{event['id']} signed; the endpoint answered 200 and queued it"

    def payment_log(self) -> str:
        session_id = self._need("session_id")
        if importlib.util.find_spec("functions.webhook_worker") is None:
            raise NotAvailable("not available: functions/webhook_worker is missing")
        for _ in _polls():
            rows = self._log_rows(
                "select status, amount, currency, user_id, stripe_event_id from payment_logs"
                " where stripe_object_id = %s and event_type = 'checkout.session.completed'",
                session_id,
            )
            if rows and rows[0][0] == "paid":
                status, amount, currency, user_id, event_id = rows[0]
                if user_id != self.member_id:
                    raise StepFailed(f"payment_logs row has user_id {user_id!r}")
                return f"payment_logs: {status} {amount} {currency}, user {user_id}, {event_id}"
        raise StepFailed("no paid checkout.session.completed row in payment_logs")

    def member_payments(self) -> str:
        session_id = self._need("session_id")
        for _ in _polls():
            answer = self._call("GET", "/v1/me/payments", token=self._member_token())
            if answer.status_code == 200:
                rows = answer.json()["payments"]
                paid = [r for r in rows if r["stripe_object_id"] == session_id]
                if any(r["status"] == "paid" for r in paid):
                    return f"{len(rows)} rows for the member, the checkout shows as paid"
        raise StepFailed(
            f"GET /v1/me/payments never showed the paid session (last answer "
            f"{answer.status_code}: {_error_text(answer)})"
        )

    def make_payload(self) -> str:
        session_id = self._need("session_id")
        base = urlsplit(self.make_receiver)
        for _ in _polls():
            received = self.http.get(f"{base.scheme}://{base.netloc}/_received").json()
            payload = next(
                (p for p in received if p.get("checkout_session_id") == session_id), None
            )
            if payload:
                if payload.get("member_id") != self.member_id:
                    raise StepFailed(f"add_project for member {payload.get('member_id')!r}")
                shown = {k: payload.get(k) for k in ("product", "amount", "currency", "member_id")}
                return f"add_project {json.dumps(shown)}"
        raise StepFailed("the Make.com receiver got no add_project for the session")

    def refund(self) -> str:
        payment_intent = self._need("payment_intent")
        admin = self._token(self.admin_id)
        body = {
            "payment_intent": payment_intent,
            "amount": 2000,
            "reason": "requested_by_customer",
            "note": "demo: partial refund",
        }
        refund = self._expect(
            self._call("POST", "/v1/refunds", token=admin, body=body, key=str(uuid.uuid4())), 201
        )
        history = self._expect(
            self._call(
                "GET",
                f"/v1/refunds?payment_intent={payment_intent}",
                token=admin,
                route="/v1/refunds",
            ),
            200,
        )
        listed = json.dumps(history)
        if refund["id"] not in listed:
            raise StepFailed("the refund is missing from GET /v1/refunds")
        return f"{refund['id']} {refund['status']} {refund['amount']} {refund['currency']}, listed"

    def subscribe(self) -> str:
        token = self._member_token()
        session = self._expect(
            self._call(
                "POST",
                "/v1/subscriptions",
                token=token,
                body={"product": "growth_monthly"},
                key=str(uuid.uuid4()),
            ),
            201,
        )
        paid = self._pay(session["id"])
        self._flush_webhooks()
        subscription = paid.get("subscription")
        for _ in _polls():
            answer = self._call("GET", "/v1/me/subscriptions", token=token)
            mine = answer.json().get("subscriptions", []) if answer.status_code == 200 else []
            active = [s for s in mine if s["id"] == subscription and s["status"] == "active"]
            if active:
                self.found["subscription"] = subscription
                return f"{subscription} active on {active[0]['product']}"
        raise StepFailed(f"{subscription} never showed as active in GET /v1/me/subscriptions")

    def _subscription_call(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        subscription = self._need("subscription")
        answer = self._call(
            "POST",
            f"/v1/subscriptions/{subscription}/{action}",
            token=self._member_token(),
            body=body,
            key=str(uuid.uuid4()),
            route=f"/v1/subscriptions/sub_x/{action}",
        )
        result: dict[str, Any] = self._expect(answer, 200)
        return result

    def change(self) -> str:
        result = self._subscription_call("change", {"product": "scale_monthly"})
        if result.get("product") != "scale_monthly":
            raise StepFailed(f"still on {result.get('product')}")
        return f"now {result['product']}, prorations {result['proration_behavior']}"

    def pause(self) -> str:
        result = self._subscription_call("pause", {})
        if not result.get("paused"):
            raise StepFailed("the subscription is not paused")
        return f"collection paused ({result.get('pause_behavior')})"

    def resume(self) -> str:
        result = self._subscription_call("resume", {})
        if result.get("paused"):
            raise StepFailed("the subscription is still paused")
        return f"collection resumed, status {result['status']}"

    def cancel(self) -> str:
        result = self._subscription_call("cancel", {"at_period_end": False})
        if result.get("status") != "canceled":
            raise StepFailed(f"status is {result.get('status')}, not canceled")
        return "canceled at once"

    def retention(self) -> str:
        if importlib.util.find_spec("functions.retention_purge") is None:
            raise NotAvailable("not available: functions/retention_purge is missing")
        summary = self.invoke("functions.retention_purge.app", {"dry_run": True}, "Retention")
        if not isinstance(summary, dict) or "total" not in summary:
            raise StepFailed(f"unexpected answer {summary!r}")
        return f"dry run: {summary['total']} rows due, nothing deleted"

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("prices come from GET /v1/pricing", self.prices),
            ("checkout started, double click safe", self.checkout),
            ("paid on the emulator", self.pay),
            ("webhook verified and queued", self.webhook),
            ("worker wrote the payment log", self.payment_log),
            ("member sees the payment", self.member_payments),
            ("Make.com add_project payload", self.make_payload),
            ("admin refund", self.refund),
            ("subscription created and paid", self.subscribe),
            ("subscription changed plan", self.change),
            ("subscription paused", self.pause),
            ("subscription resumed", self.resume),
            ("subscription canceled", self.cancel),
            ("retention purge dry run", self.retention),
        ]


def _polls(seconds: float = WAIT_SECONDS, every: float = 0.25) -> Iterator[int]:
    """Yield until ``seconds`` have passed: the worker is asynchronous, so results arrive later."""
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        yield attempt
        attempt += 1
        if time.monotonic() >= deadline:
            return
        time.sleep(every)


def _error_text(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:120]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _demo_database(stack: ExitStack) -> str:
    """``DEMO_DATABASE_URL``, or a new empty database on the demo's own embedded server."""
    configured = os.environ.get("DEMO_DATABASE_URL")
    if configured:
        return configured
    handle = embedded_postgres(local_state_dir() / "pgdemo")
    stack.callback(handle.release)
    with psycopg.connect(handle.url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {DEMO_DATABASE} with (force)")
        conn.execute(f"create database {DEMO_DATABASE}")
    return psycopg.conninfo.make_conninfo(handle.url, dbname=DEMO_DATABASE)


def run(out: TextIO) -> list[Outcome]:
    """Start the local stack, walk the journey, stop everything; return each step's outcome."""
    for name in (*SERVICE_VARIABLES, "DATABASE_URL"):
        os.environ.pop(name, None)
    os.environ["API_PORT"] = str(_free_port())
    for name in LOCAL_PORT_VARIABLES:
        os.environ[name] = "0"  # any free port: `make dev` may be running
    from tools.devserver import devlog
    from tools.devserver.__main__ import start

    # The stack's lines go where this run's stdout goes now (the log file, unless --verbose).
    devlog.configure(sys.stdout)
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        os.environ["DATABASE_URL"] = _demo_database(stack)
        server = start(stack)
        server.start_in_thread()

        def invoke(module: str, event: dict[str, Any], name: str) -> Any:
            return server.lambda_host.invoke(
                module, event, function_name=f"{name}Function", timeout_seconds=300
            )

        def has_route(method: str, path: str) -> bool:
            found = server.resolve(method, path)
            return found is not None and found[0].path != "$default"

        journey = Journey(
            api=server.url,
            emulator=os.environ["STRIPE_API_BASE"],
            make_receiver=os.environ["MAKE_WEBHOOK_URL"],
            database_url=os.environ["DATABASE_URL"],
            stripe_key=os.environ["STRIPE_SECRET_KEY"],
            admin_id=os.environ["ADMIN_MEMBER_IDS"].split(",")[0].strip(),
            invoke=invoke,
            routes=has_route,
        )
        stack.callback(journey.http.close)
        print(f"\npayment journey against {server.url} as {journey.member_id}\n", file=out)
        for title, step in journey.steps():
            started = time.monotonic()
            try:
                detail, ok = step(), True
            except StepFailed as exc:
                detail, ok = str(exc), False
            except Exception as exc:  # noqa: BLE001 - one broken step must not hide the others
                detail, ok = f"error: {type(exc).__name__}: {exc}", False
            outcome = Outcome(title, ok, detail, time.monotonic() - started)
            outcomes.append(outcome)
            print(f"  {'✓' if ok else '✗'} {title:<38} {detail}", file=out, flush=True)
        print("\nstopping the local stack…", file=out, flush=True)
    return outcomes


def summarise(outcomes: list[Outcome], out: TextIO) -> int:
    happened = [o for o in outcomes if o.ok]
    print(f"\n{len(happened)} of {len(outcomes)} steps happened:", file=out)
    print(
        "  checked: the prices Webflow shows, an idempotent checkout, payment on Stripe's hosted\n"
        "  page (emulated), the signed webhook, the worker's payment log and the member's view\n"
        "  of it, the Make.com add_project payload, an admin refund, a subscription's change,\n"
        "  pause, resume and cancel, and the retention purge (dry run).",
        file=out,
    )
    missed = [o for o in outcomes if not o.ok]
    for outcome in missed:
        print(f"  ✗ {outcome.title}: {outcome.detail}", file=out)
    total = sum(o.seconds for o in outcomes)
    print(f"  {total:.1f} s for the journey", file=out, flush=True)
    return 0 if not missed else 1


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--verbose", action="store_true", help="show the stack's own output")
    args = parser.parse_args(argv)
    out = sys.stdout
    if args.verbose:
        return summarise(run(out), out)
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    with (
        LOG_FILE.open("w", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        # Background threads print through sys.stdout too, so their lines land in the log.
        outcomes = run(out)
    code = summarise(outcomes, out)
    print(f"  the stack's own output: {_shown(LOG_FILE)}", file=out)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
