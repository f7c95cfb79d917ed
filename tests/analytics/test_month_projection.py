"""`analytics.month_projection`: the month's total, exhaustion date and plan, from known futures."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from analytics.forecasting import Forecast
from analytics.month_projection import (
    PlanOption,
    project_month,
    recommend_plan,
)

PLANS = [
    PlanOption("free", 1000, 0.0),
    PlanOption("starter", 5000, 29.0),
    PlanOption("developer", 50000, 99.0),
    PlanOption("enterprise", None, None),
]
TODAY = date(2026, 4, 21)  # April has 30 days: today and 9 more
APRIL = (date(2026, 4, 1), date(2026, 4, 30))


def futures(per_day: list[float], horizon: int = 30) -> Forecast:
    """A forecast from today whose i-th future uses `per_day[i]` calls every day."""
    paths = np.array([[rate] * horizon for rate in per_day], dtype=float)
    median = np.median(paths, axis=0)
    return Forecast("linear", 100, TODAY, median, median, median, median, median, paths, None, None)


def test_total_is_calls_so_far_plus_the_rest_of_the_month() -> None:
    usage = {date(2026, 4, 1): 100, date(2026, 4, 20): 200, TODAY: 30}
    projection = project_month(
        futures([40.0] * 5), today=TODAY, month=APRIL, month_usage=usage, limit=5000, plans=PLANS
    )
    # Today ends at 40 (30 already made), then 9 more days of 40.
    assert projection.used == 330
    assert projection.projected_total == pytest.approx(300 + 40 * 10)
    assert projection.projected_remaining == pytest.approx(5000 - 700)
    assert projection.exhaustion_date is None
    assert projection.exhaustion_probability == 0.0
    assert projection.recommended_plan == PLANS[0]  # 700 fits the free plan


def test_today_ends_with_at_least_its_calls_so_far() -> None:
    projection = project_month(
        futures([10.0]), today=TODAY, month=APRIL, month_usage={TODAY: 50}, limit=None, plans=PLANS
    )
    assert projection.projected_total == pytest.approx(50 + 10 * 9)


def test_exhaustion_date_and_its_range_come_from_the_futures() -> None:
    # 10 futures: 100, 200, ..., 1000 calls a day, with 500 used before today on a 1000 limit.
    rates = [100.0 * i for i in range(1, 11)]
    projection = project_month(
        futures(rates),
        today=TODAY,
        month=APRIL,
        month_usage={date(2026, 4, 2): 500},
        limit=1000,
        plans=PLANS,
    )
    # A future at r calls/day reaches 1000 on day ceil(500 / r) - 1 from today.
    days_to_limit = sorted(int(np.ceil(500 / r)) - 1 for r in rates)
    assert projection.exhaustion_probability == 1.0
    assert projection.exhaustion_date == date(2026, 4, 21 + days_to_limit[4])
    assert projection.exhaustion_earliest == date(2026, 4, 21 + days_to_limit[0])
    assert projection.exhaustion_latest == date(2026, 4, 21 + days_to_limit[8])
    assert projection.projected_remaining == 0.0
    assert (
        projection.projected_total_lower80
        <= projection.projected_total
        <= projection.projected_total_upper80
    )


def test_unlikely_exhaustion_has_no_date() -> None:
    rates = [10.0] * 8 + [500.0] * 2  # 2 futures of 10 run out
    projection = project_month(
        futures(rates), today=TODAY, month=APRIL, month_usage={}, limit=1000, plans=PLANS
    )
    assert projection.exhaustion_probability == pytest.approx(0.2)
    assert projection.exhaustion_date is None
    assert projection.exhaustion_latest is None
    assert projection.exhaustion_earliest is not None


def test_already_exhausted_reports_the_day_it_happened() -> None:
    usage = {date(2026, 4, 3): 600, date(2026, 4, 9): 400, TODAY: 0}
    projection = project_month(
        futures([0.0]), today=TODAY, month=APRIL, month_usage=usage, limit=1000, plans=PLANS
    )
    assert projection.exhaustion_date == date(2026, 4, 9)
    assert projection.exhaustion_probability == 1.0


def test_unlimited_plan_never_runs_out() -> None:
    projection = project_month(
        futures([1e6]), today=TODAY, month=APRIL, month_usage={}, limit=None, plans=PLANS
    )
    assert projection.exhaustion_date is None
    assert projection.exhaustion_probability is None
    assert projection.projected_remaining is None
    assert projection.recommended_plan == PLANS[3]


def test_recommendation_covers_the_upper_bound_at_the_lowest_price() -> None:
    assert recommend_plan(PLANS, 999) == PLANS[0]
    assert recommend_plan(PLANS, 1000.5) == PLANS[1]
    assert recommend_plan(PLANS, 50001) == PLANS[3]
    assert recommend_plan(list(reversed(PLANS)), 4000) == PLANS[1]
    assert recommend_plan([], 10) is None


def test_forecast_must_start_today_and_reach_month_end() -> None:
    with pytest.raises(ValueError):
        project_month(
            futures([1.0], horizon=5), today=TODAY, month=APRIL, month_usage={}, limit=None
        )


def test_today_must_lie_in_the_month_given() -> None:
    may = (date(2026, 5, 1), date(2026, 5, 31))
    with pytest.raises(ValueError):
        project_month(futures([1.0]), today=TODAY, month=may, month_usage={}, limit=None)
