"""Payment analytics for a date range, as CSV files, a printed table and a PNG bar chart.

    python -m tools.analytics_report --from 2026-01-01 --to 2026-12-31 [--out reports/]

The numbers are those of ``GET /v1/admin/analytics`` (the same SQL function). The store is the
one the service would use (``DATABASE_URL`` or the Supabase project); with neither set, the
local embedded database of ``make dev``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from payments import errors
from payments.adapters.store import Store, get_store
from payments.analytics import AnalyticsReport, Figures, PeriodFigures, analytics_report
from payments.catalog import format_amount, load_catalog
from payments.settings import get_settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = (
    "period",
    "product",
    "currency",
    "gross",
    "refunds",
    "disputes",
    "net",
    "paid_count",
    "refund_count",
    "dispute_count",
    "sessions_created",
    "conversion_rate",
    "refund_rate",
)


def _row(figures: Figures, period: str) -> dict[str, object]:
    data = figures.model_dump()
    data["period"] = period
    return {column: data[column] for column in COLUMNS}


def table_rows(report: AnalyticsReport) -> dict[str, list[dict[str, object]]]:
    """The report as flat rows: per day, per month, and per product over the whole range."""

    def periodic(items: Sequence[PeriodFigures], monthly: bool) -> list[dict[str, object]]:
        return [
            _row(f, f.period.strftime("%Y-%m") if monthly else f.period.isoformat()) for f in items
        ]

    return {
        "daily": periodic(report.daily, monthly=False),
        "monthly": periodic(report.monthly, monthly=True),
        "by_product": [_row(f, "total") for f in report.by_product],
    }


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: list[dict[str, object]]) -> str:
    """A fixed-width text table, amounts shown as money."""
    shown = []
    for row in rows:
        currency = str(row["currency"])
        cells = []
        for column in COLUMNS:
            value = row[column]
            if column in ("gross", "refunds", "disputes", "net") and isinstance(value, int):
                cells.append(format_amount(value, currency))
            elif isinstance(value, float):
                cells.append(f"{value:.1%}")
            else:
                cells.append("" if value is None else str(value))
        shown.append(cells)
    widths = [max([len(c), *(len(r[i]) for r in shown)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in shown]
    return "\n".join(lines)


def net_by_month(report: AnalyticsReport) -> tuple[list[str], dict[str, list[int]]]:
    """Months of the range that have figures, and each product's net per month. Products with
    no payment, refund or dispute in the range are left out (they would only add a legend entry
    with empty bars)."""
    months = sorted({f.period for f in report.monthly})
    net: dict[str, list[int]] = {}
    active = {f.product for f in report.monthly if f.gross or f.refunds or f.disputes}
    for product in sorted(active):
        by_month = {f.period: 0 for f in report.monthly}
        for f in report.monthly:
            if f.product == product:
                by_month[f.period] += f.net
        net[product] = [by_month[m] for m in months]
    return [m.strftime("%Y-%m") for m in months], net


def _product_name(product_id: str) -> str:
    for product in load_catalog().products:
        if product.id == product_id:
            return product.name
    return product_id


def chart_figure(report: AnalyticsReport) -> Figure:
    """Net per month, one labelled bar per product, as a matplotlib figure (no pyplot: no
    global state, no display needed)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    currency = report.by_product[0].currency if report.by_product else "usd"
    months, net = net_by_month(report)
    figure = Figure(figsize=(10, 5.6), dpi=100, layout="constrained")
    axes = figure.subplots()
    axes.set_title(
        f"Net revenue by month, {report.date_from.isoformat()} to {report.date_to.isoformat()}",
        fontsize=13,
        loc="left",
    )
    money = FuncFormatter(lambda value, _: format_amount(round(value), currency))
    axes.yaxis.set_major_formatter(money)
    axes.axhline(0, color="#555555", linewidth=0.8)
    axes.grid(axis="y", color="#e3e6ee")
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if not net:
        axes.set_xticks([])
        axes.text(
            0.5,
            0.5,
            "No payments in this range",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#5d6475",
        )
        return figure
    width = 0.8 / len(net)
    for index, (product, values) in enumerate(net.items()):
        offsets = [m + (index - (len(net) - 1) / 2) * width for m in range(len(months))]
        bars = axes.bar(offsets, values, width * 0.95, label=_product_name(product))
        axes.bar_label(
            bars,
            labels=[format_amount(v, currency) if v else "" for v in values],
            padding=2,
            fontsize=8,
        )
    axes.set_xticks(range(len(months)), months)
    axes.margins(y=0.12)
    figure.legend(frameon=False, loc="outside lower center", ncols=min(len(net), 4))
    return figure


def chart(report: AnalyticsReport) -> bytes:
    """The chart of ``chart_figure`` as PNG bytes."""
    out = io.BytesIO()
    # No "Software" tag: the same figures give the same bytes whatever the library version.
    chart_figure(report).savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


# Printed instead of the chart when matplotlib is absent (``make dev`` does not install it).
NO_CHART = "chart skipped: matplotlib comes with the test toolchain (make venv)"


def can_chart() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(report: AnalyticsReport, out: Path) -> list[Path]:
    """Write the CSV files and, when matplotlib is installed, the chart into ``out``; return
    their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"analytics_{report.date_from.isoformat()}_{report.date_to.isoformat()}"
    written = []
    for name, rows in table_rows(report).items():
        path = out / f"{stem}_{name}.csv"
        write_csv(path, rows)
        written.append(path)
    if not can_chart():
        return written
    png = out / f"{stem}_net_by_month.png"
    png.write_bytes(chart(report))
    written.append(png)
    return written


def _store() -> Store:
    settings = get_settings()
    if settings.database_url is None and not settings.supabase_url:
        from payments.adapters.postgres_store import PostgresStore
        from tools.db import apply_migrations, database_url

        url = database_url()
        apply_migrations(url)
        return PostgresStore(url)
    return get_store(settings)


def main(argv: Sequence[str] | None = None, store: Store | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.analytics_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="date_from", required=True, type=date.fromisoformat)
    parser.add_argument("--to", dest="date_to", required=True, type=date.fromisoformat)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder (reports/)")
    args = parser.parse_args(argv)
    try:
        report = analytics_report(store or _store(), args.date_from, args.date_to)
    except errors.PaymentsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    rows = table_rows(report)
    print("Monthly")
    print(format_table(rows["monthly"]))
    print("\nBy product")
    print(format_table(rows["by_product"]))
    written = write_report(report, args.out)
    for path in written:
        print(f"wrote {path}")
    if not any(path.suffix == ".png" for path in written):
        print(NO_CHART)
    return 0


if __name__ == "__main__":
    sys.exit(main())
