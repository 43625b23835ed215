"""Payment trends by product: gross, refunds, disputes, net, conversion, refund rate, for the
one-time tracks and the subscription plans (whose gross is every paid invoice: first payments
and renewals).

The numbers come from the ``analytics_daily`` view through ``analytics_report(from, to)``, so
the admin route and ``python -m tools.analytics_report`` can never disagree.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import ConfigDict, Field, computed_field

from payments import errors
from payments.adapters.store import Store
from payments.schema import Model

MAX_SPAN_YEARS = 2


class Figures(Model):
    """Amounts in the currency's smallest unit (cents)."""

    product: str
    currency: str
    kind: Literal["one_time", "subscription"] = Field(
        default="one_time", description="A one-time track, or a subscription plan"
    )
    gross: int
    refunds: int
    disputes: int
    net: int
    paid_count: int
    refund_count: int
    dispute_count: int
    sessions_created: int
    renewal_count: int = Field(default=0, description="Paid renewal invoices of a plan")
    payment_failure_count: int = Field(default=0, description="Failed renewal attempts of a plan")

    @computed_field(description="Paid purchases / checkout sessions created")  # type: ignore[prop-decorator]
    @property
    def conversion_rate(self) -> float | None:
        return round(self.paid_count / self.sessions_created, 4) if self.sessions_created else None

    @computed_field(description="Refunded amount / gross amount")  # type: ignore[prop-decorator]
    @property
    def refund_rate(self) -> float | None:
        return round(self.refunds / self.gross, 4) if self.gross else None


class PeriodFigures(Figures):
    period: date = Field(description="The day, or the first day of the month.")


class AnalyticsReport(Model):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    daily: list[PeriodFigures]
    monthly: list[PeriodFigures]
    by_product: list[Figures]


def _two_years_after(day: date) -> date:
    try:
        return day.replace(year=day.year + MAX_SPAN_YEARS)
    except ValueError:  # 29 February
        return day.replace(year=day.year + MAX_SPAN_YEARS, day=28)


def check_range(date_from: date, date_to: date) -> None:
    """``from`` on or before ``to``, at most two years apart (both days included)."""
    if date_from > date_to:
        raise errors.Unprocessable("'from' must be on or before 'to'.", code="invalid_date_range")
    if date_to > _two_years_after(date_from):
        raise errors.Unprocessable(
            f"The range may span at most {MAX_SPAN_YEARS} years.", code="date_range_too_long"
        )


def analytics_report(store: Store, date_from: date, date_to: date) -> AnalyticsReport:
    """Daily, monthly and per-product figures of ``[date_from, date_to]`` (UTC days)."""
    check_range(date_from, date_to)
    data: dict[str, Any] = store.call(
        "analytics_report", p_from=date_from.isoformat(), p_to=date_to.isoformat()
    )
    return AnalyticsReport.model_validate(
        {
            "from": date_from,
            "to": date_to,
            "daily": data.get("daily") or [],
            "monthly": data.get("monthly") or [],
            "by_product": data.get("by_product") or [],
        }
    )
