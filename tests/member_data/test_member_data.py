"""Member reads under RLS, export and erasure, against the real SQL through both adapters."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import pytest

from payments import errors, member_data
from payments.adapters.store import Store
from tests.conftest import STATE_TABLES
from tests.member_data.rows import Rows

MEMBER_TABLES = {
    # table -> the column holding the member id
    "payment_logs": "user_id",
    "purchases": "member_id",
    "subscriptions": "member_id",
    "refunds": "member_id",
    "customers": "member_id",
}


def _pseudonym(member_id: str) -> str:
    return "erased:" + hashlib.sha256(member_id.encode()).hexdigest()[:16]


def _select_as(db: str, role: str, sub: str | None, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        conn.execute(f"set local role {role}")
        claims = {"role": role} | ({"sub": sub} if sub else {})
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        return conn.execute(query).fetchall()


# --- RLS matrix -------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("table", sorted(MEMBER_TABLES))
def test_each_member_table_shows_a_member_only_their_own_rows(
    rows: Rows, db: str, table: str
) -> None:
    # Given member A and member B both have rows in every table
    rows.member("mem_a", "a")
    rows.member("mem_b", "b")
    column = MEMBER_TABLES[table]
    query = f"select distinct {column} from {table} order by 1"
    # When each member reads the table with no filter of their own
    seen_by_a = _select_as(db, "authenticated", "mem_a", query)
    seen_by_b = _select_as(db, "authenticated", "mem_b", query)
    # Then RLS shows each only their rows, and the service role sees both
    assert seen_by_a == [("mem_a",)]
    assert seen_by_b == [("mem_b",)]
    assert _select_as(db, "service_role", None, query) == [("mem_a",), ("mem_b",)]


@pytest.mark.integration
@pytest.mark.parametrize("table", [*sorted(MEMBER_TABLES), "erasures"])
def test_anon_can_read_no_member_table(rows: Rows, db: str, table: str) -> None:
    rows.member("mem_a", "a")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _select_as(db, "anon", None, f"select * from {table}")


@pytest.mark.integration
@pytest.mark.parametrize("table", sorted(MEMBER_TABLES))
@pytest.mark.parametrize(
    "statement",
    ["update {table} set {column} = 'mem_b'", "delete from {table}"],
)
def test_a_member_can_neither_change_nor_delete_rows(
    rows: Rows, db: str, table: str, statement: str
) -> None:
    rows.member("mem_a", "a")
    sql = statement.format(table=table, column=MEMBER_TABLES[table])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _select_as(db, "authenticated", "mem_a", sql + " returning 1")


@pytest.mark.integration
def test_the_erasure_log_is_hidden_from_members(rows: Rows, store: Store, db: str) -> None:
    rows.member("mem_a", "a")
    store.call("erase_member_data", p_member_id="mem_a")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _select_as(db, "authenticated", "mem_a", "select * from erasures")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("function", "params"),
    [
        ("erase_member_data", {"p_member_id": "mem_b"}),
        ("purge_expired_rows", {"p_target": "payment_logs", "p_retention_months": 1,
                                "p_ledger_days": 1}),
        ("analytics_report", {"p_from": "2026-01-01", "p_to": "2026-01-31"}),
        ("member_pseudonym", {"p_member_id": "mem_b"}),
    ],
)  # fmt: skip
def test_members_cannot_call_service_functions(
    any_store: Store, rows: Rows, function: str, params: dict[str, Any]
) -> None:
    # Given member B's data
    rows.member("mem_b", "b")
    # When member A calls a service-only function
    with pytest.raises(errors.Forbidden):
        any_store.call_as_member("mem_a", function, **params)
    # Then nothing changed
    assert rows.count("payment_logs", "user_id = 'mem_b'") == 1


@pytest.mark.integration
@pytest.mark.parametrize("role", ["anon", "service_role"])
def test_the_export_runs_only_for_a_member(db: str, role: str) -> None:
    # The export without a member is meaningless (and as the service role, everyone's data).
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _select_as(db, role, None, "select public.member_data_export()")


@pytest.mark.integration
def test_member_functions_are_security_invoker(db: str) -> None:
    with psycopg.connect(db) as conn:
        definer = conn.execute(
            "select proname from pg_proc where pronamespace = 'public'::regnamespace"
            " and proname in ('member_data_export', 'member_payment_logs') and prosecdef"
        ).fetchall()
        granted = conn.execute(
            "select has_function_privilege('authenticated', 'public.member_data_export()',"
            " 'execute'), has_function_privilege('anon', 'public.member_data_export()',"
            " 'execute')"
        ).fetchone()
    assert definer == []
    assert granted == (True, False)


# --- payment history and export ---------------------------------------------------------------


@pytest.mark.integration
def test_payment_history_pages_newest_first_with_an_opaque_cursor(
    any_store: Store, rows: Rows
) -> None:
    # Given five payments of member A and one of member B
    for amount in (100, 200, 300, 400, 4950):
        rows.log("mem_a", amount=amount, metadata={"product": "social_media_email_campaign"})
    rows.log("mem_b", amount=9900)
    # When A pages through two at a time
    first = member_data.payment_history(any_store, "mem_a", limit=2)
    assert first.next_cursor is not None
    second = member_data.payment_history(any_store, "mem_a", limit=2, cursor=first.next_cursor)
    assert second.next_cursor is not None
    third = member_data.payment_history(any_store, "mem_a", limit=2, cursor=second.next_cursor)
    # Then every own payment appears once, newest first, formatted, and the last page ends
    amounts = [p.amount for page in (first, second, third) for p in page.payments]
    assert amounts == [4950, 400, 300, 200, 100]
    assert first.payments[0].display_amount == "$49.50"
    assert first.payments[0].product == "social_media_email_campaign"
    assert third.next_cursor is None
    assert "mem" not in first.next_cursor


@pytest.mark.unit
@pytest.mark.parametrize("cursor", ["", "abc", "djE6MA", "djE6LTE", "eDox", "%%%", "A" * 65])
def test_a_cursor_we_did_not_issue_is_a_bad_request(cursor: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        member_data.decode_cursor(cursor)


@pytest.mark.unit
def test_a_cursor_round_trips() -> None:
    assert member_data.decode_cursor(member_data.encode_cursor(12345)) == 12345


@pytest.mark.integration
def test_the_export_holds_the_members_rows_of_every_table_and_no_one_elses(
    any_store: Store, rows: Rows
) -> None:
    # Given two members with data everywhere
    rows.member("mem_a", "a")
    rows.member("mem_b", "b")
    # When member A exports
    export = member_data.export_member_data(any_store, "mem_a")
    # Then each section has A's row and nothing of B
    assert export.customer is not None
    assert export.customer["member_id"] == "mem_a"
    assert [r["user_id"] for r in export.payment_logs] == ["mem_a"]
    assert [r["member_id"] for r in export.purchases] == ["mem_a"]
    assert [r["member_id"] for r in export.subscriptions] == ["mem_a"]
    assert [r["member_id"] for r in export.refunds] == ["mem_a"]
    assert "mem_b" not in export.model_dump_json()


# --- erasure ----------------------------------------------------------------------------------


def _tables_mentioning(db: str, needle: str) -> list[str]:
    with psycopg.connect(db) as conn:
        return [
            table
            for table in STATE_TABLES
            if conn.execute(
                f"select count(*) from {table} t where strpos(t::text, %s) > 0",
                (needle,),
            ).fetchone()
            != (0,)
        ]


@pytest.mark.integration
def test_after_erasure_nothing_names_the_member_and_the_export_is_empty(
    any_store: Store, rows: Rows, db: str
) -> None:
    # Given member A (with an e-mail in log metadata and a note on a refund) and member B
    rows.member("mem_a", "a")
    rows.member("mem_b", "b")
    # When A's data is erased
    receipt = member_data.erase_member_data(any_store, "mem_a", requested_by="mem_a")
    # Then no table holds A's id or personal details, and A's export is empty
    assert _tables_mentioning(db, "mem_a") == []
    assert _tables_mentioning(db, "a@example.test") == []
    assert _tables_mentioning(db, "a asked by phone") == []
    export = member_data.export_member_data(any_store, "mem_a")
    assert export.customer is None
    assert export.payment_logs == export.purchases == export.refunds == export.subscriptions == []
    # And the accounting rows are kept with their amounts under the pseudonym
    assert receipt.pseudonym == _pseudonym("mem_a")
    assert rows.count("purchases", f"member_id = '{receipt.pseudonym}' and amount = 9900") == 1
    assert rows.count("payment_logs", f"user_id = '{receipt.pseudonym}' and amount = 9900") == 1
    assert rows.count("refunds", f"member_id = '{receipt.pseudonym}' and amount = 1000") == 1
    assert rows.count("customers") == 1
    assert receipt.rows == {
        "payment_logs": 1, "purchases": 1, "refunds": 1, "subscriptions": 1,
        "subscription_invoices": 0, "customers": 1, "outbox": 1,
    }  # fmt: skip
    # And member B is untouched
    assert member_data.export_member_data(any_store, "mem_b").customer is not None
    assert len(member_data.export_member_data(any_store, "mem_b").payment_logs) == 1


@pytest.mark.integration
def test_erasure_is_recorded_without_the_member_id_and_repeating_it_changes_nothing(
    any_store: Store, rows: Rows, db: str
) -> None:
    rows.member("mem_a", "a")
    first = member_data.erase_member_data(any_store, "mem_a", requested_by="mem_a")
    again = member_data.erase_member_data(any_store, "mem_a", requested_by="mem_a")
    assert first.already_erased is False
    assert again.already_erased is True
    assert set(again.rows.values()) == {0}
    with psycopg.connect(db) as conn:
        erasures = conn.execute(
            "select pseudonym, requested_by, requests, rows_changed ->> 'purchases' from erasures"
        ).fetchall()
    assert erasures == [(_pseudonym("mem_a"), "member", 2, "1")]
    assert rows.count("purchases", f"member_id = '{_pseudonym('mem_a')}'") == 1


@pytest.mark.integration
def test_an_admin_erasure_records_the_admin_by_pseudonym_only(
    any_store: Store, rows: Rows, db: str
) -> None:
    rows.member("mem_a", "a")
    member_data.erase_member_data(any_store, "mem_a", requested_by="usr_root")
    with psycopg.connect(db) as conn:
        (requested_by,) = conn.execute("select requested_by from erasures").fetchone() or ("",)
    assert requested_by == "admin:" + _pseudonym("usr_root").removeprefix("erased:")
    assert _tables_mentioning(db, "usr_root") == []


@pytest.mark.integration
def test_erasure_is_refused_while_a_subscription_is_live(any_store: Store, rows: Rows) -> None:
    # Given a member whose subscription Stripe still bills
    rows.member("mem_a", "a")
    rows.subscription("sub_live", "mem_a", status="active")
    # When the member asks for erasure
    with pytest.raises(errors.Conflict) as refused:
        member_data.erase_member_data(any_store, "mem_a", requested_by="mem_a")
    # Then it is refused with a reason a person can act on, and nothing was changed
    assert refused.value.code == "subscription_active"
    assert rows.count("customers", "member_id = 'mem_a'") == 1
    assert rows.count("payment_logs", "user_id = 'mem_a'") == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("owed", "code"),
    [
        ("dispatch", "erasure_pending"),
        ("open_checkout", "erasure_pending"),
        ("settling_payment", "erasure_pending"),
        ("pending_refund", "erasure_pending"),
    ],
)
def test_erasure_waits_while_money_or_fulfilment_is_still_owed(
    any_store: Store, rows: Rows, owed: str, code: str
) -> None:
    # Given a member with something still owed to them or by them
    rows.member("mem_a", "a")
    if owed == "dispatch":
        rows.outbox("add_project:cs_x", {"member_id": "mem_a"}, status="pending")
    elif owed == "open_checkout":
        rows.purchase("mem_a", "cs_open", status="open")
        rows.conn.execute("update purchases set expires_at = now() + interval '1 hour'")
    elif owed == "settling_payment":
        rows.purchase("mem_a", "cs_debit", status="processing")
    else:
        rows.refund("re_pending", "pi_a", "mem_a", status="pending")
    # When the member asks for erasure
    with pytest.raises(errors.Conflict) as refused:
        member_data.erase_member_data(any_store, "mem_a", requested_by="mem_a")
    # Then it waits, says why in plain words, and nothing owed was dropped
    assert refused.value.code == code
    assert "erase" in refused.value.message.lower()
    assert rows.count("payment_logs", "user_id = 'mem_a'") == 1
    assert rows.count("outbox", "member_id = 'mem_a' and status = 'pending'") == (
        1 if owed == "dispatch" else 0
    )


@pytest.mark.integration
def test_a_checkout_left_open_past_its_expiry_does_not_block_erasure(
    any_store: Store, rows: Rows
) -> None:
    rows.member("mem_a", "a")
    rows.purchase("mem_a", "cs_stale", status="open")
    rows.conn.execute("update purchases set expires_at = now() - interval '1 minute'")
    assert member_data.erase_member_data(any_store, "mem_a", requested_by="mem_a").rows


@pytest.mark.integration
def test_an_erased_admin_is_named_by_pseudonym_in_other_members_refund_logs(
    any_store: Store, rows: Rows, db: str
) -> None:
    # Given an admin who refunded member B, and B's log line naming the admin
    rows.member("mem_b", "b")
    rows.log("mem_b", event_type="refund.requested", metadata={"requested_by": "mem_root"})
    # When the admin's own data is erased
    member_data.erase_member_data(any_store, "mem_root", requested_by="mem_root")
    # Then no row names the admin any more, and B's line keeps who asked, by pseudonym
    assert _tables_mentioning(db, "mem_root") == []
    assert (
        rows.count(
            "payment_logs",
            "metadata ->> 'requested_by' = 'admin:' || substr(member_pseudonym('mem_root'), 8)",
        )
        == 1
    )
