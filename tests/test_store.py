"""The store port against the real SQL functions: directly over Postgres and through the
Supabase adapter (PostgREST RPC executed on the same database), with RLS enforced."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import psycopg
import pytest

from payments import errors
from payments.adapters.postgres_store import PostgresStore
from payments.adapters.store import Store
from payments.adapters.supabase_store import SupabaseStore
from tests.fakes.postgrest import PostgrestOverPostgres

pytestmark = pytest.mark.integration

JWT_SECRET = "test-jwt-secret-with-at-least-32-characters"


def _service_role_key() -> str:
    return jwt.encode({"role": "service_role", "iat": int(time.time())}, JWT_SECRET, "HS256")


@pytest.fixture(params=["postgres", "supabase"])
def any_store(request: pytest.FixtureRequest, db: str) -> Iterator[Store]:
    if request.param == "postgres":
        pg = PostgresStore(db)
        yield pg
        pg.close()
    else:
        transport = PostgrestOverPostgres(db, JWT_SECRET)
        client = httpx.Client(transport=transport)
        yield SupabaseStore(
            "https://project.supabase.co", _service_role_key(), JWT_SECRET, http_client=client
        )


def _log(store: Store, user: str | None, event_id: str | None, amount: int = 9900) -> dict:
    return store.call(
        "log_payment",
        p_event_type="checkout.session.completed",
        p_user_id=user,
        p_amount=amount,
        p_currency="usd",
        p_status="paid",
        p_stripe_event_id=event_id,
        p_stripe_object_id="cs_test_1",
        p_metadata={"product": "business_plan_builder"},
    )


def test_log_payment_writes_a_row_and_absorbs_a_repeated_event_id(
    any_store: Store, db: str
) -> None:
    # Given a logged event
    first = _log(any_store, "mem_a", "evt_1")
    # When the same Stripe event is logged again
    again = _log(any_store, "mem_a", "evt_1")
    # Then one row exists
    assert first["inserted"] is True
    assert again["inserted"] is False
    with psycopg.connect(db) as conn:
        rows = conn.execute("select user_id, amount, metadata from payment_logs").fetchall()
    assert rows == [("mem_a", 9900, {"product": "business_plan_builder"})]


def test_rows_without_event_id_are_not_deduplicated(any_store: Store, db: str) -> None:
    _log(any_store, "mem_a", None)
    _log(any_store, "mem_a", None)
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from payment_logs").fetchone() == (2,)


def test_member_reads_only_their_own_rows_under_rls(any_store: Store) -> None:
    # Given rows of two members
    _log(any_store, "mem_a", "evt_a1", 100)
    _log(any_store, "mem_a", "evt_a2", 200)
    _log(any_store, "mem_b", "evt_b1", 300)
    # When member A reads through the member function (which has no WHERE on user_id)
    rows_a = any_store.call_as_member("mem_a", "member_payment_logs", p_limit=50)
    rows_b = any_store.call_as_member("mem_b", "member_payment_logs", p_limit=50)
    # Then RLS alone restricts each to their own rows, newest first
    assert [r["amount"] for r in rows_a] == [200, 100]
    assert [r["amount"] for r in rows_b] == [300]


def test_member_pagination_continues_before_the_cursor(any_store: Store) -> None:
    for i in range(5):
        _log(any_store, "mem_a", f"evt_{i}", i)
    page1 = any_store.call_as_member("mem_a", "member_payment_logs", p_limit=2)
    page2 = any_store.call_as_member(
        "mem_a", "member_payment_logs", p_limit=2, p_before_id=page1[-1]["id"]
    )
    assert [r["amount"] for r in page1] == [4, 3]
    assert [r["amount"] for r in page2] == [2, 1]


def _as_role(conn: psycopg.Connection, role: str, member: str) -> None:
    conn.execute(f"set local role {role}")
    conn.execute(
        "select set_config('request.jwt.claims', %s, true)",
        (f'{{"sub": "{member}", "role": "{role}"}}',),
    )


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_anon_and_members_cannot_write_and_see_no_foreign_rows(db: str, role: str) -> None:
    # Given a row of member A
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("insert into payment_logs (event_type, user_id) values ('x', 'mem_a')")
        # When member B (or anon) reads the table directly
        with conn.transaction():
            _as_role(conn, role, "mem_b")
            if role == "anon":
                # Then anon may not even read the table
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("select * from payment_logs")
            else:
                # Then a member sees none of another member's rows
                assert conn.execute("select count(*) from payment_logs").fetchone() == (0,)
    # And writing is refused
    with psycopg.connect(db) as conn:
        _as_role(conn, role, "mem_b")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into payment_logs (event_type, user_id) values ('x', 'mem_b')")


def test_members_cannot_call_service_functions(any_store: Store) -> None:
    with pytest.raises(errors.Forbidden):
        any_store.call_as_member("mem_a", "log_payment", p_event_type="forged", p_user_id="mem_a")


def test_supabase_member_calls_carry_a_short_lived_signed_token(db: str) -> None:
    transport = PostgrestOverPostgres(db, JWT_SECRET)
    supa = SupabaseStore(
        "https://p.supabase.co",
        _service_role_key(),
        JWT_SECRET,
        http_client=httpx.Client(transport=transport),
    )
    supa.call_as_member("mem_a", "member_payment_logs", p_limit=1)
    token = transport.requests[-1].headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == "mem_a"
    assert claims["role"] == "authenticated"
    assert 0 < claims["exp"] - time.time() <= 60


def test_unreachable_database_is_reported_as_unavailable() -> None:
    dead = PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(errors.UpstreamUnavailable):
        dead.call("log_payment", p_event_type="x")
