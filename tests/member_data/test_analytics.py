"""Analytics figures checked against a known set of rows; the range rules; the report tool."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from payments import errors
from payments.adapters.store import Store
from payments.analytics import analytics_report, check_range
from tests.member_data.rows import Rows
from tools import analytics_report as report_tool

BPB, WAF, SMEC = "business_plan_builder", "website_audit_feedback", "social_media_email_campaign"


def _session(rows: Rows, session: str, product: str, at: str, **purchase: object) -> None:
    rows.conn.execute(
        "insert into payment_logs (created_at, event_type, user_id, amount, currency, status,"
        " stripe_object_id) values (%s, 'checkout.session.created', 'mem_a', 100, 'usd',"
        " 'open', %s)",
        (at, session),
    )
    rows.purchase("mem_a", session, at=at, product=product, **purchase)  # type: ignore[arg-type]


@pytest.fixture
def known_rows(rows: Rows) -> Rows:
    # March: three Business Plan sessions, two paid ($99), one abandoned; one $40 refund
    _session(rows, "cs_1", BPB, "2026-03-01 09:00Z", status="paid", payment_intent="pi_1")
    _session(
        rows,
        "cs_2",
        BPB,
        "2026-03-01 10:00Z",
        status="partially_refunded",
        payment_intent="pi_2",
        amount_refunded=4000,
    )
    _session(rows, "cs_3", BPB, "2026-03-01 11:00Z", status="open")
    rows.refund("re_1", "pi_2", "mem_a", amount=4000, at="2026-03-05 12:00Z")
    rows.refund("re_pending", "pi_1", "mem_a", amount=500, at="2026-03-06 12:00Z", status="pending")
    # A Website Audit ($79) bought on 2 March and disputed on 10 March
    _session(
        rows,
        "cs_4",
        WAF,
        "2026-03-02 08:00Z",
        status="disputed",
        amount=7900,
        payment_intent="pi_4",
        updated_at="2026-03-10 08:00Z",
    )
    # April: one Social Media campaign ($49), paid
    _session(rows, "cs_5", SMEC, "2026-04-15 08:00Z", status="paid", amount=4900)
    # Outside the range: not counted
    _session(rows, "cs_0", BPB, "2025-12-31 23:00Z", status="paid")
    return rows  # fmt: skip


@pytest.mark.integration
def test_monthly_figures_match_the_rows(store: Store, known_rows: Rows) -> None:
    report = analytics_report(store, date(2026, 1, 1), date(2026, 12, 31))
    monthly = {(f.period.isoformat(), f.product): f for f in report.monthly}
    assert set(monthly) == {("2026-03-01", BPB), ("2026-03-01", WAF), ("2026-04-01", SMEC)}
    bpb = monthly[("2026-03-01", BPB)]
    assert (bpb.gross, bpb.refunds, bpb.disputes, bpb.net) == (19800, 4000, 0, 15800)
    assert (bpb.paid_count, bpb.sessions_created, bpb.refund_count) == (2, 3, 1)
    assert bpb.conversion_rate == 0.6667
    assert bpb.refund_rate == 0.202
    waf = monthly[("2026-03-01", WAF)]
    assert (waf.gross, waf.disputes, waf.net, waf.conversion_rate) == (7900, 7900, 0, 1.0)
    smec = monthly[("2026-04-01", SMEC)]
    assert (smec.gross, smec.net, smec.refund_rate) == (4900, 4900, 0.0)


@pytest.mark.integration
def test_daily_figures_put_refunds_and_disputes_on_their_own_day(
    store: Store, known_rows: Rows
) -> None:
    report = analytics_report(store, date(2026, 3, 1), date(2026, 3, 31))
    daily = {(f.period.isoformat(), f.product): f for f in report.daily}
    assert daily[("2026-03-01", BPB)].gross == 19800
    assert daily[("2026-03-05", BPB)].refunds == 4000
    assert daily[("2026-03-05", BPB)].net == -4000
    assert daily[("2026-03-10", WAF)].disputes == 7900
    assert ("2026-03-06", BPB) not in daily  # a pending refund is not money back yet
    totals = {f.product: f for f in report.by_product}
    assert set(totals) == {BPB, WAF}
    assert totals[BPB].net == 15800


@pytest.mark.integration
def test_a_month_of_paid_plans_is_subscription_revenue_by_plan(store: Store, rows: Rows) -> None:
    # Given a subscription bought in May (its checkout and first invoice), renewed in June,
    # with one failed attempt before the June renewal went through
    rows.conn.execute(
        "insert into payment_logs (created_at, event_type, user_id, amount, currency, status,"
        " stripe_object_id, metadata) values ('2026-05-03 10:00Z', 'checkout.session.created',"
        " 'mem_a', 2900, 'usd', 'open', 'cs_sub', '{\"mode\": \"subscription\"}')"
    )
    rows.conn.execute(
        "insert into purchases (checkout_session_id, member_id, product, mode, amount,"
        " currency, status, payment_status, subscription_id, created_at, updated_at) values"
        " ('cs_sub', 'mem_a', 'growth_monthly', 'subscription', 2900, 'usd', 'paid', 'paid',"
        " 'sub_1', '2026-05-03 10:00Z', '2026-05-03 10:00Z')"
    )
    for invoice, reason, paid_at, failed_at in [
        ("in_1", "subscription_create", "2026-05-03 10:01Z", None),
        ("in_2", "subscription_cycle", "2026-06-05 09:00Z", "2026-06-03 09:00Z"),
    ]:
        rows.conn.execute(
            "insert into subscription_invoices (id, subscription_id, member_id, product,"
            " amount_due, amount_paid, currency, status, billing_reason, paid_at, failed_at,"
            " state_as_of) values (%s, 'sub_1', 'mem_a', 'growth_monthly', 2900, 2900, 'usd',"
            " 'paid', %s, %s, %s, %s)",
            (invoice, reason, paid_at, failed_at, paid_at),
        )
    # When the analytics of May and June are read
    report = analytics_report(store, date(2026, 5, 1), date(2026, 6, 30))
    monthly = {(f.period.isoformat(), f.product): f for f in report.monthly}
    may, june = monthly[("2026-05-01", "growth_monthly")], monthly[("2026-06-01", "growth_monthly")]
    # Then each paid invoice is revenue of the plan, the first payment counted once
    assert (may.kind, may.gross, may.paid_count, may.renewal_count) == ("subscription", 2900, 1, 0)
    assert (june.gross, june.renewal_count, june.payment_failure_count) == (2900, 1, 1)
    assert may.conversion_rate == 1.0
    [total] = [t for t in report.by_product if t.product == "growth_monthly"]
    assert total.net == 5800


@pytest.mark.integration
def test_the_monthly_view_agrees_with_the_report(store: Store, known_rows: Rows) -> None:
    viewed = known_rows.conn.execute(
        "select product, gross, refunds, disputes, net, conversion_rate::float8,"
        " refund_rate::float8 from analytics_monthly where month = '2026-03-01' order by product"
    ).fetchall()
    assert viewed == [
        (BPB, 19800, 4000, 0, 15800, 0.6667, 0.202),
        (WAF, 7900, 0, 7900, 0, 1.0, 0.0),
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (date(2026, 2, 1), date(2026, 1, 31), "invalid_date_range"),
        (date(2024, 1, 1), date(2026, 1, 2), "date_range_too_long"),
        (date(2024, 2, 29), date(2026, 3, 1), "date_range_too_long"),
    ],
)
def test_a_backwards_or_too_long_range_is_refused(start: date, end: date, code: str) -> None:
    with pytest.raises(errors.Unprocessable) as refused:
        check_range(start, end)
    assert refused.value.code == code


@pytest.mark.unit
@pytest.mark.parametrize(
    ("start", "end"),
    [(date(2026, 1, 1), date(2026, 1, 1)), (date(2024, 1, 1), date(2026, 1, 1))],
)
def test_a_single_day_and_exactly_two_years_are_accepted(start: date, end: date) -> None:
    check_range(start, end)


@pytest.mark.integration
def test_the_report_command_writes_csv_and_png_with_the_same_numbers(
    store: Store, known_rows: Rows, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the report is run for 2026
    code = report_tool.main(
        ["--from", "2026-01-01", "--to", "2026-12-31", "--out", str(tmp_path)], store=store
    )
    # Then it writes the monthly table with the figures of the API and a chart
    assert code == 0
    monthly = tmp_path / "analytics_2026-01-01_2026-12-31_monthly.csv"
    with monthly.open() as handle:
        table = {(r["period"], r["product"]): r for r in csv.DictReader(handle)}
    assert table[("2026-03", BPB)]["net"] == "15800"
    assert table[("2026-03", BPB)]["conversion_rate"] == "0.6667"
    assert (tmp_path / "analytics_2026-01-01_2026-12-31_net_by_month.png").read_bytes()[:4] == (
        b"\x89PNG"
    )
    printed = capsys.readouterr().out
    assert "$158" in printed
    assert BPB in printed


@pytest.mark.integration
def test_the_report_command_refuses_a_backwards_range(store: Store, tmp_path: Path) -> None:
    code = report_tool.main(
        ["--from", "2026-02-01", "--to", "2026-01-01", "--out", str(tmp_path)], store=store
    )
    assert code == 2
    assert list(tmp_path.iterdir()) == []
