"""The attack matrix: hostile requests, the status each must get, and proof nothing happened.

Every case is one request to a real handler (in process, the API Gateway event Lambda would
get). Each declares the status it must answer; the runner also checks that the answer is the
contract's error JSON, that no row of any state table changed, that nothing was queued for the
worker and that no Stripe API call was made. CORS cases check that a foreign origin gets no
``Access-Control-Allow-Origin``.

``tests/reliability/test_attacks.py`` parametrizes over :data:`ATTACKS`; ``make reliability``
runs them all and reports the count.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql

from tools.devserver.events import http_event
from tools.devserver.lambda_host import FakeLambdaContext
from tools.reliability.chaos import Action, ChaosEnv, ChaosPlan, FaultProfile, run_plan

SQL = "x' OR '1'='1'; DROP TABLE payment_logs; --"
SQL_PI = "pi_1' OR '1'='1"
SQL_SUB = "sub_1'; DELETE FROM subscriptions; --"
FOREIGN_ORIGIN = "https://evil.example"
WEBHOOK_PATH = "/v1/webhooks/stripe"
QUIET = FaultProfile(
    db_fault_rate=0,
    kill_rate=0,
    make_fault_max=0,
    stripe_fault_max=0,
    hang_rate=0,
    max_duplicates=1,
    late_redelivery_rate=0,
)
STATE_TABLES = (
    "payment_logs",
    "processed_events",
    "customers",
    "purchases",
    "subscriptions",
    "refunds",
    "outbox",
    "erasures",
)


@dataclass(frozen=True)
class Victim:
    """Another member's paid purchase and subscription, as the worker recorded them."""

    member: str
    payment_intent: str
    subscription: str


@dataclass
class AttackContext:
    """What the cases need from the stack; the handlers' environment is the caller's job."""

    webhook_secret: str
    member_token: Callable[[str], str]
    # Tokens the service must refuse, by kind: expired, wrong_audience, other_app, and
    # revoked (an administrator's: member tokens are verified against the published keys and a
    # revoked one passes until it expires; an administrator's is confirmed with Memberstack).
    bad_tokens: dict[str, str]
    admin_token: str
    attacker: str
    victim: Victim
    # Snapshot of everything an attack must not change: row counts, queue, Stripe calls.
    side_effects: Callable[[], dict[str, int]]


@dataclass(frozen=True)
class Request:
    function: str
    method: str
    path: str
    route: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: str = ""
    path_parameters: dict[str, str] | None = None


@dataclass(frozen=True)
class Attack:
    name: str
    group: str
    expected: int
    build: Callable[[AttackContext], Request]
    # CORS: the header a foreign origin must not get.
    cors: bool = False


@dataclass(frozen=True)
class Outcome:
    attack: Attack
    status: int
    body: Any
    headers: dict[str, str]
    changed: dict[str, tuple[int, int]]

    @property
    def problems(self) -> list[str]:
        found = []
        if self.status != self.attack.expected:
            found.append(f"answered {self.status}, expected {self.attack.expected}")
        if self.status >= 400 and not _is_error_body(self.body):
            found.append(f"not the error JSON: {self.body!r}")
        if self.changed:
            found.append(f"side effects: {self.changed}")
        if self.attack.cors and "access-control-allow-origin" in self.headers:
            found.append("a foreign origin got Access-Control-Allow-Origin")
        return found


def _is_error_body(body: Any) -> bool:
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    error = body["error"]
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    )


# --- request builders ---------------------------------------------------------------------


def stripe_event_body(event_id: str = "evt_attack_0001") -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "checkout.session.completed",
            "created": int(time.time()),
            "data": {"object": {"id": "cs_attack", "object": "checkout.session"}},
        }
    )


def sign(body: str, secret: str, timestamp: int | None = None, scheme: str = "v1") -> str:
    at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},{scheme}={digest}"


def _webhook(body: str, signature: str | None) -> Request:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = signature
    return Request("webhook", "POST", WEBHOOK_PATH, headers=headers, body=body.encode())


def _signed(ctx: AttackContext, body: str | None = None, **kwargs: Any) -> Request:
    text = body if body is not None else stripe_event_body()
    return _webhook(text, sign(text, ctx.webhook_secret, **kwargs))


def _tampered(ctx: AttackContext) -> Request:
    body = stripe_event_body()
    signature = sign(body, ctx.webhook_secret)
    return _webhook(body.replace("checkout.session.completed", "charge.refunded"), signature)


def _crlf(ctx: AttackContext) -> Request:
    body = stripe_event_body()
    forged = sign(body, "whsec_attacker")
    return _webhook(body, forged + "\r\nStripe-Signature: " + sign(body, ctx.webhook_secret)[:20])


def _api(
    function: str,
    method: str,
    path: str,
    *,
    token: str | None,
    body: Any = None,
    raw: bytes | None = None,
    route: str | None = None,
    query: str = "",
    path_parameters: dict[str, str] | None = None,
    origin: str | None = None,
) -> Request:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["origin"] = origin
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return Request(function, method, path, route, headers, payload, query, path_parameters)


def _checkout(token: str | None, body: Any = None, raw: bytes | None = None) -> Request:
    return _api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        token=token,
        body=body if body is not None or raw is not None else {"product": "business_plan_builder"},
        raw=raw,
    )


def _subscription(token: str, subscription: str, verb: str, body: Any) -> Request:
    return _api(
        "subscriptions",
        "POST",
        f"/v1/subscriptions/{subscription}/{verb}",
        token=token,
        body=body,
        route=f"POST /v1/subscriptions/{{id}}/{verb}",
        path_parameters={"id": subscription},
    )


def _nested(depth: int) -> bytes:
    return ('{"product": ' + "[" * depth + "]" * depth + "}").encode()


def _member(ctx: AttackContext) -> str:
    return ctx.member_token(ctx.attacker)


def _refund(ctx: AttackContext, token: str, body: dict[str, Any]) -> Request:
    return _api("refunds", "POST", "/v1/refunds", token=token, body=body)


# --- the matrix ---------------------------------------------------------------------------

ATTACKS: tuple[Attack, ...] = (
    # Stripe webhook signatures
    Attack(
        "webhook: no signature", "signature", 400, lambda c: _webhook(stripe_event_body(), None)
    ),
    Attack(
        "webhook: signed with another secret",
        "signature",
        400,
        lambda c: _webhook(body := stripe_event_body(), sign(body, "whsec_not_ours_0123456789")),
    ),
    Attack("webhook: body tampered after signing", "signature", 400, _tampered),
    Attack(
        "webhook: timestamp 10 minutes old",
        "signature",
        400,
        lambda c: _signed(c, timestamp=int(time.time()) - 600),
    ),
    Attack(
        "webhook: timestamp 10 minutes ahead",
        "signature",
        400,
        lambda c: _signed(c, timestamp=int(time.time()) + 600),
    ),
    Attack(
        "webhook: replay of a valid event captured an hour ago",
        "signature",
        400,
        lambda c: _signed(c, timestamp=int(time.time()) - 3600),
    ),
    Attack("webhook: v0 signature only", "signature", 400, lambda c: _signed(c, scheme="v0")),
    Attack("webhook: CRLF injected in the signature header", "signature", 400, _crlf),
    Attack(
        "webhook: valid signature of another body",
        "signature",
        400,
        lambda c: _webhook(
            stripe_event_body("evt_attack_other"),
            sign(stripe_event_body("evt_attack_0002"), c.webhook_secret),
        ),
    ),
    Attack(
        "webhook: signed non-event JSON",
        "signature",
        400,
        lambda c: _signed(c, body='{"object": "event", "id": "not-an-event"}'),
    ),
    Attack(
        "webhook: signed event nested 3000 deep",
        "size",
        400,
        lambda c: _signed(c, body=_nested(3000).decode()),
    ),
    Attack(
        "webhook: signed body over the SQS limit",
        "size",
        413,
        lambda c: _signed(c, body=json.dumps({"pad": "x" * 300_000})),
    ),
    # Member tokens
    Attack("token: none", "token", 401, lambda c: _checkout(None)),
    Attack("token: garbage", "token", 401, lambda c: _checkout("not-a-jwt")),
    Attack(
        "token: alg none",
        "token",
        401,
        lambda c: _checkout("eyJhbGciOiJub25lIn0.eyJzdWIiOiJtZW1fYWRtaW4ifQ."),
    ),
    Attack("token: expired", "token", 401, lambda c: _checkout(c.bad_tokens["expired"])),
    Attack(
        "token: wrong audience", "token", 401, lambda c: _checkout(c.bad_tokens["wrong_audience"])
    ),
    Attack(
        "token: another app's signing key",
        "token",
        401,
        lambda c: _checkout(c.bad_tokens["other_app"]),
    ),
    Attack(
        "token: an administrator's, revoked",
        "token",
        401,
        lambda c: _checkout(c.bad_tokens["revoked"]),
    ),
    Attack(
        "token: an administrator's, revoked, on the admin refund route",
        "token",
        401,
        lambda c: _refund(
            c,
            c.bad_tokens["revoked"],
            {"payment_intent": c.victim.payment_intent, "reason": "requested_by_customer"},
        ),
    ),
    # Authorisation
    Attack(
        "authz: member refunds a payment",
        "authz",
        403,
        lambda c: _refund(
            c, _member(c), {"payment_intent": c.victim.payment_intent, "reason": "duplicate"}
        ),
    ),
    Attack(
        "authz: member reads refund history",
        "authz",
        403,
        lambda c: _api(
            "refunds",
            "GET",
            "/v1/refunds",
            token=_member(c),
            query=f"payment_intent={c.victim.payment_intent}",
        ),
    ),
    Attack(
        "authz: member switches another member's purchase",
        "authz",
        404,
        lambda c: _api(
            "refunds",
            "POST",
            "/v1/purchases/switch",
            token=_member(c),
            body={"payment_intent": c.victim.payment_intent, "product": "website_audit_feedback"},
        ),
    ),
    Attack(
        "authz: member changes another member's subscription",
        "authz",
        404,
        lambda c: _subscription(
            _member(c), c.victim.subscription, "change", {"product": "scale_monthly"}
        ),
    ),
    Attack(
        "authz: member cancels another member's subscription",
        "authz",
        404,
        lambda c: _subscription(
            _member(c), c.victim.subscription, "cancel", {"at_period_end": False}
        ),
    ),
    Attack(
        "authz: member pauses another member's subscription",
        "authz",
        404,
        lambda c: _subscription(_member(c), c.victim.subscription, "pause", {}),
    ),
    Attack(
        "authz: member erases another member's data",
        "authz",
        403,
        lambda c: _api(
            "member_data",
            "DELETE",
            f"/v1/admin/members/{c.victim.member}/data",
            token=_member(c),
            route="DELETE /v1/admin/members/{member_id}/data",
            path_parameters={"member_id": c.victim.member},
        ),
    ),
    Attack(
        "authz: member reads admin analytics",
        "authz",
        403,
        lambda c: _api(
            "member_data",
            "GET",
            "/v1/admin/analytics",
            token=_member(c),
            query="from=2020-01-01&to=2030-01-01",
        ),
    ),
    # CORS
    Attack(
        "cors: foreign origin reads pricing",
        "cors",
        200,
        lambda c: _api("catalog", "GET", "/v1/pricing", token=None, origin=FOREIGN_ORIGIN),
        cors=True,
    ),
    Attack(
        "cors: foreign origin preflights checkout",
        "cors",
        204,
        lambda c: _api(
            "create_checkout",
            "OPTIONS",
            "/v1/checkout/sessions",
            token=None,
            origin=FOREIGN_ORIGIN,
            route="POST /v1/checkout/sessions",
        ),
        cors=True,
    ),
    Attack(
        "cors: foreign origin reads a member's payments with the member's token",
        "cors",
        200,
        lambda c: _api(
            "member_data",
            "GET",
            "/v1/me/payments",
            token=_member(c),
            origin=FOREIGN_ORIGIN,
        ),
        cors=True,
    ),
    # Bodies
    Attack(
        "body: 20 KiB checkout body",
        "size",
        413,
        lambda c: _checkout(_member(c), {"product": "x" * 20_000}),
    ),
    Attack(
        "body: JSON nested 3000 deep",
        "size",
        400,
        lambda c: _checkout(_member(c), raw=_nested(3000)),
    ),
    Attack(
        "body: refund nested 3000 deep (admin)",
        "size",
        400,
        lambda c: _api("refunds", "POST", "/v1/refunds", token=c.admin_token, raw=_nested(3000)),
    ),
    Attack(
        "body: not JSON",
        "size",
        400,
        lambda c: _checkout(_member(c), raw=b"product=business_plan_builder"),
    ),
    # SQL-looking strings in every string field and path parameter
    Attack("sql: checkout product", "sql", 400, lambda c: _checkout(_member(c), {"product": SQL})),
    Attack(
        "sql: refund payment_intent (admin)",
        "sql",
        400,
        lambda c: _refund(c, c.admin_token, {"payment_intent": SQL_PI, "reason": "duplicate"}),
    ),
    Attack(
        "sql: refund reason (admin)",
        "sql",
        400,
        lambda c: _refund(c, c.admin_token, {"payment_intent": "pi_unknown1", "reason": SQL}),
    ),
    Attack(
        "sql: refund note (admin, unknown payment)",
        "sql",
        404,
        lambda c: _refund(
            c,
            c.admin_token,
            {"payment_intent": "pi_unknown1", "reason": "duplicate", "note": SQL},
        ),
    ),
    Attack(
        "sql: refund history payment_intent (admin)",
        "sql",
        400,
        lambda c: _api(
            "refunds", "GET", "/v1/refunds", token=c.admin_token, query=f"payment_intent={SQL_PI}"
        ),
    ),
    Attack(
        "sql: switch payment_intent",
        "sql",
        400,
        lambda c: _api(
            "refunds",
            "POST",
            "/v1/purchases/switch",
            token=_member(c),
            body={"payment_intent": SQL_PI, "product": "website_audit_feedback"},
        ),
    ),
    Attack(
        "sql: switch product",
        "sql",
        400,
        lambda c: _api(
            "refunds",
            "POST",
            "/v1/purchases/switch",
            token=_member(c),
            body={"payment_intent": c.victim.payment_intent, "product": SQL},
        ),
    ),
    Attack(
        "sql: subscribe product",
        "sql",
        400,
        lambda c: _api(
            "subscriptions", "POST", "/v1/subscriptions", token=_member(c), body={"product": SQL}
        ),
    ),
    Attack(
        "sql: subscription id in the path",
        "sql",
        400,
        lambda c: _subscription(_member(c), SQL_SUB, "cancel", {"at_period_end": True}),
    ),
    Attack(
        "sql: subscription change product",
        "sql",
        400,
        lambda c: _subscription(_member(c), c.victim.subscription, "change", {"product": SQL}),
    ),
    Attack(
        "sql: member id in the admin erase path (admin)",
        "sql",
        400,
        lambda c: _api(
            "member_data",
            "DELETE",
            f"/v1/admin/members/{SQL}/data",
            token=c.admin_token,
            route="DELETE /v1/admin/members/{member_id}/data",
            path_parameters={"member_id": SQL},
        ),
    ),
    Attack(
        "sql: payment history cursor",
        "sql",
        400,
        lambda c: _api(
            "member_data", "GET", "/v1/me/payments", token=_member(c), query="cursor=1' OR '1'='1"
        ),
    ),
    Attack(
        "sql: analytics dates (admin)",
        "sql",
        400,
        lambda c: _api(
            "member_data",
            "GET",
            "/v1/admin/analytics",
            token=c.admin_token,
            query="from=2024-01-01'--&to=2024-02-01",
        ),
    ),
)


def side_effects(
    database_url: str, stripe_base: str, queued: Callable[[], int]
) -> Callable[[], dict[str, int]]:
    """A snapshot function: row counts of every state table, messages queued, Stripe calls."""

    def snapshot() -> dict[str, int]:
        with psycopg.connect(database_url) as conn:
            counts = {
                table: int(
                    conn.execute(
                        sql.SQL("select count(*) from {}").format(sql.Identifier(table))
                    ).fetchone()[0]  # type: ignore[index]
                )
                for table in STATE_TABLES
            }
        calls = httpx.get(f"{stripe_base}/_emulator/calls", timeout=10).json()
        counts["stripe_api_calls"] = int(calls["total"])
        counts["queued_messages"] = queued()
        return counts

    return snapshot


def prepare_victim(env: ChaosEnv) -> Victim:
    """A member with a paid purchase and a paid subscription, processed by the worker."""
    plan = ChaosPlan(((Action("buy", 0, 0), Action("subscribe", 0, 0)),), seed=7, members=1)
    report = run_plan(env, plan, QUIET)
    purchase, subscription = report.purchases[0], report.subscriptions[0]
    if report.problems or not purchase.payment_intent:
        raise RuntimeError(f"could not prepare the victim: {report.problems}")
    return Victim(purchase.member, purchase.payment_intent, subscription.subscription_id)


def invoke(request: Request) -> tuple[int, dict[str, str], Any]:
    """Call the handler with the API Gateway event of ``request``."""
    event = http_event(
        method=request.method,
        path=request.path,
        route_key=request.route or f"{request.method} {request.path}",
        headers=list(request.headers.items()),
        body=request.body,
        query=request.query,
        path_parameters=request.path_parameters,
    )
    module = importlib.import_module(f"functions.{request.function}.app")
    result = module.lambda_handler(event, FakeLambdaContext(request.function, timeout_seconds=10))
    text = result.get("body") or ""
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = text
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    return int(result["statusCode"]), headers, body


def run_attack(attack: Attack, ctx: AttackContext) -> Outcome:
    """Send ``attack`` and compare what it changed."""
    request = attack.build(ctx)
    before = ctx.side_effects()
    status, headers, body = invoke(request)
    after = ctx.side_effects()
    changed = {k: (before[k], after.get(k, 0)) for k in before if before[k] != after.get(k, 0)}
    return Outcome(attack, status, body, headers, changed)
