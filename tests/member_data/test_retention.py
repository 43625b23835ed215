"""The retention purge against the real SQL: the 24-month line, batches, disputes, resuming."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payments.adapters.store import Store
from payments.retention import RetentionPolicy, purge_expired
from tests.member_data.rows import Rows

pytestmark = pytest.mark.integration

OLD = "24 months 1 day"
RECENT = "23 months 29 days"
POLICY = RetentionPolicy(retention_months=24)


def always() -> bool:
    return True


def for_calls(n: int) -> Callable[[], bool]:
    """Time for ``n`` SQL calls, then the deadline."""
    left = iter(range(n, 0, -1))
    return lambda: next(left, 0) > 0


def _rows_on_both_sides_of_the_line(rows: Rows) -> None:
    rows.log("mem_a", ago=OLD, object_id="cs_old")
    rows.log("mem_a", ago=RECENT, object_id="cs_recent")
    rows.purchase("mem_a", "cs_old", ago=OLD, payment_intent="pi_old")
    rows.purchase("mem_a", "cs_recent", ago=RECENT, payment_intent="pi_recent")
    rows.refund("re_old", "pi_old", "mem_a", ago=OLD)
    rows.refund("re_recent", "pi_recent", "mem_a", ago=RECENT)
    rows.subscription("sub_ended_old", "mem_a", status="canceled", ago=OLD)
    rows.subscription("sub_live_old", "mem_a", status="active", ago=OLD)
    rows.subscription("sub_ended_recent", "mem_a", status="canceled", ago=RECENT)
    rows.customer("mem_gone", ago=OLD)  # nothing refers to it any more
    rows.customer("mem_a", ago=OLD)  # still has a live subscription
    rows.processed_event("evt_old", ago="31 days")
    rows.processed_event("evt_recent", ago="29 days")
    rows.outbox("make:old", {"product": "x"}, ago="31 days")
    rows.outbox("make:recent", {"product": "x"}, ago="29 days")
    rows.outbox("make:pending", {"product": "x"}, status="pending", ago=OLD)


def test_rows_older_than_the_window_go_and_newer_ones_stay(store: Store, rows: Rows) -> None:
    # Given rows just before and just after the 24-month line (30 days for the ledger)
    _rows_on_both_sides_of_the_line(rows)
    # When the purge runs to the end
    report = purge_expired(store, POLICY, has_time=always)
    # Then exactly the expired rows are gone
    assert report.complete is True
    assert report.rows == {
        "processed_events": 1, "outbox": 1, "refunds": 1, "payment_logs": 1, "purchases": 1,
        "subscriptions": 1, "customers": 1, "erasures": 0,
    }  # fmt: skip
    assert rows.count("payment_logs", "stripe_object_id = 'cs_recent'") == 1
    assert rows.count("purchases") == rows.count("refunds") == rows.count("payment_logs") == 1
    assert {r for (r,) in rows.conn.execute("select id from subscriptions")} == {
        "sub_live_old",
        "sub_ended_recent",
    }
    assert {r for (r,) in rows.conn.execute("select member_id from customers")} == {"mem_a"}
    assert {r for (r,) in rows.conn.execute("select event_id from processed_events")} == {
        "evt_recent"
    }
    assert {r for (r,) in rows.conn.execute("select dedupe_key from outbox")} == {
        "make:recent",
        "make:pending",
    }


def test_an_old_disputed_payment_keeps_its_purchase_refunds_and_logs(
    store: Store, rows: Rows
) -> None:
    # Given a three-year-old purchase whose dispute is still open, and an undisputed one
    rows.purchase("mem_a", "cs_d", ago="36 months", payment_intent="pi_d", status="disputed")
    rows.log("mem_a", ago="36 months", object_id="cs_d")
    rows.log("mem_a", ago="36 months", object_id="du_1", metadata={"payment_intent": "pi_d"})
    rows.refund("re_d", "pi_d", "mem_a", ago="36 months")
    rows.purchase("mem_a", "cs_p", ago="36 months", payment_intent="pi_p")
    rows.log("mem_a", ago="36 months", object_id="cs_p")
    # When the purge runs
    purge_expired(store, POLICY, has_time=always)
    # Then everything the dispute needs is still there, the rest is gone
    assert rows.count("purchases") == 1
    assert rows.count("purchases", "status = 'disputed'") == 1
    assert rows.count("payment_logs") == 2
    assert rows.count("refunds") == 1


def test_more_rows_than_one_batch_are_purged_in_several_batches(store: Store, rows: Rows) -> None:
    # Given 2,500 expired log lines and a batch of 1,000
    rows.conn.execute(
        "insert into payment_logs (created_at, event_type, user_id, amount)"
        " select now() - interval '25 months', 'x', 'mem_a', g from generate_series(1, 2500) g"
    )
    # When the purge runs to the end
    report = purge_expired(store, POLICY, has_time=always)
    # Then all are gone, in three batches of the log table (plus one call per other table)
    assert report.rows["payment_logs"] == 2500
    assert report.batches == 3 + 7
    assert rows.count("payment_logs") == 0


def test_a_purge_stopped_by_the_deadline_resumes_on_the_next_run(store: Store, rows: Rows) -> None:
    # Given 2,500 expired log lines
    rows.conn.execute(
        "insert into payment_logs (created_at, event_type, user_id, amount)"
        " select now() - interval '25 months', 'x', 'mem_a', g from generate_series(1, 2500) g"
    )
    rows.log("mem_a", ago=RECENT)
    # When the first run has time for four calls (three tables, then one log batch)
    first = purge_expired(store, POLICY, has_time=for_calls(4))
    # Then it stops cleanly, having deleted one batch
    assert (first.complete, first.rows["payment_logs"]) == (False, 1000)
    assert rows.count("payment_logs") == 1501
    # And the next run finishes the job without touching the recent row
    second = purge_expired(store, POLICY, has_time=always)
    assert (second.complete, second.rows["payment_logs"]) == (True, 1500)
    assert rows.count("payment_logs") == 1


def test_a_dry_run_counts_what_a_real_run_deletes_and_deletes_nothing(
    store: Store, rows: Rows
) -> None:
    _rows_on_both_sides_of_the_line(rows)
    before = rows.count("payment_logs") + rows.count("purchases") + rows.count("outbox")
    dry = purge_expired(store, POLICY, has_time=always, dry_run=True)
    assert rows.count("payment_logs") + rows.count("purchases") + rows.count("outbox") == before
    real = purge_expired(store, POLICY, has_time=always)
    assert dry.rows == real.rows
    assert dry.total == real.total == 7


def test_purging_twice_is_harmless(any_store: Store, rows: Rows) -> None:
    _rows_on_both_sides_of_the_line(rows)
    purge_expired(any_store, POLICY, has_time=always)
    again = purge_expired(any_store, POLICY, has_time=always)
    assert (again.complete, again.total) == (True, 0)
    assert rows.count("payment_logs") == 1


def test_erasure_records_expire_with_the_window(store: Store, rows: Rows) -> None:
    rows.member("mem_a", "a")
    store.call("erase_member_data", p_member_id="mem_a")
    rows.conn.execute("update erasures set last_erased_at = now() - interval '25 months'")
    report = purge_expired(store, POLICY, has_time=always)
    assert report.rows["erasures"] == 1
    assert rows.count("erasures") == 0


def test_a_purchase_lost_to_a_dispute_is_purged_like_any_other(store: Store, rows: Rows) -> None:
    # Given a three-year-old purchase whose dispute was lost (decided, not open)
    rows.purchase("mem_a", "cs_l", ago="36 months", payment_intent="pi_l", status="dispute_lost")
    rows.log("mem_a", ago="36 months", object_id="cs_l")
    # When the purge runs, then nothing keeps it for ever
    purge_expired(store, POLICY, has_time=always)
    assert rows.count("purchases") == 0
    assert rows.count("payment_logs") == 0
