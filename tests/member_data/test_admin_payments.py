"""Admin payment search: GET /v1/admin/payments over real HTTP (the local API server runs the
real handler) with real Memberstack tokens, and the SQL behind it through both store adapters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import psycopg
import pytest

from payments import errors
from payments.adapters.store import Store
from payments.admin_payments import PaymentSearch, decode_cursor, encode_cursor, find_payments
from tests.member_data.rows import Rows
from tools.devserver.routes import http_routes
from tools.devserver.server import ApiServer
from tools.local.memberstack import MemberstackServer, start_memberstack

pytestmark = pytest.mark.integration

ADMIN = "mem_admin_1"


@pytest.fixture
def memberstack() -> Iterator[MemberstackServer]:
    server = start_memberstack(secret_key="sk_test_ms", app_id="app_test")
    yield server
    server.stop()


@pytest.fixture
def api(env: pytest.MonkeyPatch, db: str, memberstack: MemberstackServer) -> Iterator[httpx.Client]:
    env.setenv("DATABASE_URL", db)
    env.setenv("MEMBERSTACK_API_BASE", memberstack.url)
    env.setenv("MEMBERSTACK_SECRET_KEY", memberstack.secret_key)
    env.setenv("MEMBERSTACK_APP_ID", memberstack.app_id)
    env.setenv("ADMIN_MEMBER_IDS", ADMIN)
    routes = [r for r in http_routes() if r.function == "MemberDataFunction"]
    server = ApiServer(("127.0.0.1", 0), routes=routes, static_root=None)
    server.start_in_thread()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
    server.shutdown()
    server.server_close()


def bearer(memberstack: MemberstackServer, member_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {memberstack.mint(member_id)}"}


@pytest.fixture
def two_members(rows: Rows) -> Rows:
    """A: a paid purchase partly refunded and a fully refunded one; B: one paid purchase.
    Plus checkouts that never took money, which are not payments."""
    rows.purchase(
        "mem_a",
        "cs_a1",
        payment_intent="pi_a1",
        status="partially_refunded",
        amount_refunded=1000,
        at="2026-03-01 09:00Z",
    )
    rows.refund("re_a1", "pi_a1", "mem_a", amount=1000, at="2026-03-02 10:00Z", note="late")
    rows.purchase(
        "mem_a",
        "cs_a2",
        payment_intent="pi_a2",
        product="website_audit_feedback",
        amount=7900,
        status="refunded",
        amount_refunded=7900,
        at="2026-03-05 09:00Z",
    )
    rows.refund("re_a2", "pi_a2", "mem_a", amount=7900, at="2026-03-06 10:00Z")
    rows.purchase("mem_b", "cs_b1", payment_intent="pi_b1", at="2026-03-03 09:00Z")
    rows.purchase("mem_a", "cs_open", status="open", at="2026-03-04 09:00Z")
    rows.purchase("mem_a", "cs_failed", payment_intent="pi_f", status="failed")
    rows.purchase("mem_a", "cs_expired", status="expired")
    return rows


# --- the route ----------------------------------------------------------------------------


def test_without_a_token_the_search_is_a_401(api: httpx.Client) -> None:
    response = api.get("/v1/admin/payments")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("query", [{}, {"member": "mem_b"}, {"payment_intent": "pi_b1"}])
def test_a_member_who_is_not_an_admin_gets_a_403_and_no_payment(
    api: httpx.Client, memberstack: MemberstackServer, two_members: Rows, query: dict[str, str]
) -> None:
    # Given B, a member but not an admin, asking even for B's own payments
    response = api.get("/v1/admin/payments", params=query, headers=bearer(memberstack, "mem_b"))
    # Then the answer is a refusal that carries no payment
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "admin_only", "message": "Only an administrator can do this."}
    }


def test_a_misspelled_filter_is_refused_rather_than_searching_everyone(
    api: httpx.Client, memberstack: MemberstackServer, two_members: Rows
) -> None:
    # When the admin writes member_id for member
    response = api.get(
        "/v1/admin/payments", params={"member_id": "mem_a"}, headers=bearer(memberstack, ADMIN)
    )
    # Then it is a 400 naming the parameter and what the route reads, with no payment
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    assert error["message"].startswith("Unknown query parameter(s): member_id.")
    assert "member, payment_intent, from, to, limit, cursor" in error["message"]


def test_an_admin_finds_a_members_payments_with_refunds_and_what_is_left(
    api: httpx.Client, memberstack: MemberstackServer, two_members: Rows
) -> None:
    # When the admin searches by A's member id
    response = api.get(
        "/v1/admin/payments", params={"member": "mem_a"}, headers=bearer(memberstack, ADMIN)
    )
    # Then A's two payments come newest first, never B's, never checkouts that took no money
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert [p["payment_intent"] for p in body["payments"]] == ["pi_a2", "pi_a1"]
    assert body["next_cursor"] is None
    refunded, partial = body["payments"]
    assert partial["member_id"] == "mem_a"
    assert partial["product_name"] == "Business Plan Builder"
    assert (partial["amount"], partial["amount_refunded"], partial["refundable"]) == (
        9900,
        1000,
        8900,
    )
    assert (partial["display_amount"], partial["display_refundable"]) == ("$99", "$89")
    assert [(r["id"], r["amount"], r["note"], r["display_amount"]) for r in partial["refunds"]] == [
        ("re_a1", 1000, "late", "$10")
    ]
    assert (refunded["status"], refunded["refundable"]) == ("refunded", 0)


def test_an_admin_finds_one_payment_by_its_payment_intent(
    api: httpx.Client, memberstack: MemberstackServer, two_members: Rows
) -> None:
    response = api.get(
        "/v1/admin/payments", params={"payment_intent": "pi_b1"}, headers=bearer(memberstack, ADMIN)
    )
    assert [p["member_id"] for p in response.json()["payments"]] == ["mem_b"]


def test_a_date_range_includes_both_days(
    api: httpx.Client, memberstack: MemberstackServer, two_members: Rows
) -> None:
    # When the admin asks for 1 to 3 March
    response = api.get(
        "/v1/admin/payments",
        params={"from": "2026-03-01", "to": "2026-03-03"},
        headers=bearer(memberstack, ADMIN),
    )
    # Then the payments of 1 and 3 March are found, not the one of 5 March
    assert [p["payment_intent"] for p in response.json()["payments"]] == ["pi_b1", "pi_a1"]


def test_the_admin_pages_through_payments_with_the_cursor(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows
) -> None:
    # Given five payments, three of them at the very same instant
    for n in range(3):
        rows.purchase("mem_a", f"cs_same{n}", payment_intent=f"pi_same{n}", at="2026-05-01 12:00Z")
    rows.purchase("mem_a", "cs_new", payment_intent="pi_new", at="2026-05-02 12:00Z")
    rows.purchase("mem_a", "cs_old", payment_intent="pi_old", at="2026-04-01 12:00Z")
    headers = bearer(memberstack, ADMIN)
    # When the admin reads two per page until the end
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api.get("/v1/admin/payments", params=params, headers=headers).json()
        seen += [p["payment_intent"] for p in body["payments"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Then every payment is seen once, newest first, ties in a stable order
    assert seen == ["pi_new", "pi_same2", "pi_same1", "pi_same0", "pi_old"]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"cursor": "not-ours"}, 400, "invalid_cursor"),
        ({"limit": 0}, 400, "invalid_request"),
        ({"limit": 101}, 400, "invalid_request"),
        ({"member": "mem a' or '1'='1"}, 400, "invalid_request"),
        ({"payment_intent": "ch_123"}, 400, "invalid_request"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, 422, "invalid_date_range"),
        ({"from": "yesterday"}, 400, "invalid_request"),
    ],
)
def test_a_bad_search_is_refused_with_its_reason(
    api: httpx.Client,
    memberstack: MemberstackServer,
    query: dict[str, object],
    status: int,
    code: str,
) -> None:
    response = api.get("/v1/admin/payments", params=query, headers=bearer(memberstack, ADMIN))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


# --- the SQL, through both adapters -------------------------------------------------------


def test_both_stores_find_the_same_payments(any_store: Store, two_members: Rows) -> None:
    page = find_payments(any_store, PaymentSearch(member="mem_a"))
    assert [(p.payment_intent, p.refundable) for p in page.payments] == [
        ("pi_a2", 0),
        ("pi_a1", 8900),
    ]


def test_what_is_left_counts_pending_refunds_and_fresh_reservations_only(
    store: Store, rows: Rows
) -> None:
    # Given a $99 payment with a succeeded $10, a pending $5, a reservation of $2 still in
    # flight, one of $3 left by a dead invocation, and a failed $20 refund
    rows.purchase("mem_a", "cs_1", payment_intent="pi_1", status="partially_refunded")
    rows.refund("re_ok", "pi_1", "mem_a", amount=1000)
    rows.refund("re_pending", "pi_1", "mem_a", amount=500, status="pending")
    rows.refund("rfq_fresh", "pi_1", "mem_a", amount=200, status="requested")
    rows.refund("rfq_dead", "pi_1", "mem_a", amount=300, status="requested", ago="1 hour")
    rows.refund("re_failed", "pi_1", "mem_a", amount=2000, status="failed")
    # When the admin opens it
    [payment] = find_payments(store, PaymentSearch(payment_intent="pi_1")).payments
    # Then $82.00 is left, and reservations are not listed as refunds
    assert payment.refundable == 9900 - 1000 - 500 - 200
    assert sorted(r.id for r in payment.refunds) == ["re_failed", "re_ok", "re_pending"]


@pytest.mark.parametrize("status", ["disputed", "switched", "processing"])
def test_a_payment_that_cannot_be_refunded_has_nothing_left(
    store: Store, rows: Rows, status: str
) -> None:
    rows.purchase("mem_a", "cs_1", payment_intent="pi_1", status=status)
    [payment] = find_payments(store, PaymentSearch(payment_intent="pi_1")).payments
    assert payment.refundable == 0


def test_what_is_left_is_exactly_what_a_refund_may_take(store: Store, rows: Rows) -> None:
    # Given a payment partly refunded
    rows.purchase("mem_a", "cs_1", payment_intent="pi_1", status="partially_refunded")
    rows.refund("re_ok", "pi_1", "mem_a", amount=1234)
    [payment] = find_payments(store, PaymentSearch(payment_intent="pi_1")).payments

    def reserve(amount: int) -> dict[str, Any]:
        result: dict[str, Any] = store.call(
            "reserve_refund",
            p_payment_intent="pi_1",
            p_amount=amount,
            p_reason="requested_by_customer",
            p_requested_by=ADMIN,
            p_client_key=f"k{amount}",
        )
        return result

    # Then one cent more than the figure is refused, and the figure itself is accepted
    assert reserve(payment.refundable + 1)["reason"] == "exceeds_refundable"
    assert reserve(payment.refundable)["outcome"] == "reserved"


def test_a_member_cannot_call_the_search_function(db: str, two_members: Rows) -> None:
    with psycopg.connect(db) as conn:
        allowed = conn.execute(
            "select has_function_privilege(r, 'public.admin_payments(text, text, timestamptz,"
            " timestamptz, timestamptz, bigint, integer, integer)', 'execute')"
            " from unnest(array['authenticated', 'anon', 'service_role']) r"
        ).fetchall()
    assert [row[0] for row in allowed] == [False, False, True]


# --- the cursor ---------------------------------------------------------------------------


@pytest.mark.unit
def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    moment = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(moment, 42)) == (moment, 42)
    for forged in ("", "x" * 200, "bm90IGpzb24", "WyJwMSIsIjIwMjYtMDUtMDEiLDFd", "WzFd"):
        with pytest.raises(errors.InvalidRequest):
            decode_cursor(forged)


@pytest.mark.unit
def test_a_backwards_range_is_refused_before_any_query() -> None:
    with pytest.raises(errors.Unprocessable):
        PaymentSearch(date_from=date(2026, 2, 1), date_to=date(2026, 1, 1)).check()
