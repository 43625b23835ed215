"""The analytics report's chart: drawn by matplotlib with labelled bars, a legend of the products
that have figures, money on the axis, and a PNG a person can open."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from PIL import Image

from payments.analytics import AnalyticsReport
from tools.analytics_report import chart, chart_figure, net_by_month

pytestmark = pytest.mark.unit

BPB, WAF, SMEC = "business_plan_builder", "website_audit_feedback", "social_media_email_campaign"


def _figures(period: str, product: str, **amounts: int) -> dict[str, Any]:
    gross, refunds, disputes = (amounts.get(k, 0) for k in ("gross", "refunds", "disputes"))
    return {
        "period": period,
        "product": product,
        "currency": "usd",
        "gross": gross,
        "refunds": refunds,
        "disputes": disputes,
        "net": gross - refunds - disputes,
        "paid_count": gross // 100,
        "refund_count": 1 if refunds else 0,
        "dispute_count": 1 if disputes else 0,
        "sessions_created": 1,
    }


def _report(monthly: list[dict[str, Any]]) -> AnalyticsReport:
    totals = {}
    for row in monthly:
        totals.setdefault(row["product"], {**row, "period": None})
    by_product = [{k: v for k, v in t.items() if k != "period"} for t in totals.values()]
    return AnalyticsReport.model_validate(
        {
            "from": date(2026, 1, 1),
            "to": date(2026, 12, 31),
            "daily": [],
            "monthly": monthly,
            "by_product": by_product,
        }
    )


@pytest.fixture
def report() -> AnalyticsReport:
    return _report(
        [
            _figures("2026-03-01", BPB, gross=19800, refunds=4000),
            _figures("2026-03-01", WAF, gross=7900, disputes=7900),
            _figures("2026-04-01", SMEC, gross=4900),
            # Only abandoned checkouts: a row without money in it
            _figures("2026-04-01", "growth_monthly"),
        ]
    )


def test_the_series_hold_each_products_net_per_month_and_only_products_with_figures(
    report: AnalyticsReport,
) -> None:
    months, net = net_by_month(report)
    assert months == ["2026-03", "2026-04"]
    assert net == {BPB: [15800, 0], SMEC: [0, 4900], WAF: [0, 0]}


def test_the_chart_labels_its_bars_and_names_products_in_the_legend(
    report: AnalyticsReport,
) -> None:
    # When the chart is drawn
    figure = chart_figure(report)
    axes = figure.axes[0]
    # Then the legend names the products with figures by their catalog name
    (shown,) = figure.legends
    legend = [text.get_text() for text in shown.get_texts()]
    assert legend == [
        "Business Plan Builder",
        "Social Media & Email Campaign",
        "Website Audit & Feedback",
    ]
    # And each bar with a value carries it as money, and the months label the axis
    labels = {text.get_text() for text in axes.texts}
    assert {"$158", "$49"} <= labels
    assert [t.get_text() for t in axes.get_xticklabels()] == ["2026-03", "2026-04"]
    assert "2026-01-01 to 2026-12-31" in axes.get_title(loc="left")


def test_the_axis_reads_as_money(report: AnalyticsReport) -> None:
    axes = chart_figure(report).axes[0]
    formatter = axes.yaxis.get_major_formatter()
    assert formatter(15000, 0) == "$150"


def test_the_png_opens_as_an_image_of_the_figures_size(report: AnalyticsReport) -> None:
    image = Image.open(io.BytesIO(chart(report)))
    assert image.format == "PNG"
    assert image.size == (1000, 560)
    # Drawn bars: the first default colour of matplotlib is present
    pixels = image.convert("RGB")
    colours = {pixels.getpixel((x, y)) for x in range(0, 1000, 4) for y in range(0, 560, 4)}
    assert (31, 119, 180) in colours


def test_a_range_without_payments_says_so() -> None:
    figure = chart_figure(_report([]))
    assert [t.get_text() for t in figure.axes[0].texts] == ["No payments in this range"]
    assert figure.legends == []


def test_without_matplotlib_the_csv_files_are_written_and_the_chart_is_skipped(
    report: AnalyticsReport, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a virtualenv without matplotlib (make dev installs only what running needs)
    import sys

    from tools import analytics_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)

    # When the report is written
    written = analytics_report.write_report(report, tmp_path)

    # Then the CSV files are there and no chart was attempted
    assert {path.suffix for path in written} == {".csv"}
    assert not analytics_report.can_chart()
