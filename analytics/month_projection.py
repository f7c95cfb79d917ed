"""The current month's projection: total calls, the quota exhaustion date, the plan that fits.

Each simulated future of a `Forecast` is added to the calls already made this month, so the
month's total, its interval and the exhaustion date all come from the same futures. Today is
partly over: in every future, today ends with at least the calls it already has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from analytics.forecasting import Forecast

# The "80% range" of a projected quantity: the 10th to 90th percentile of the futures.
LOWER_QUANTILE, UPPER_QUANTILE = 0.1, 0.9


@dataclass(frozen=True)
class PlanOption:
    """A plan a customer could be on; `monthly_limit` None means unlimited."""

    name: str
    monthly_limit: int | None
    price_usd: float | None


@dataclass(frozen=True)
class MonthProjection:
    """Where this UTC month is heading."""

    first_day: date
    last_day: date
    used: int
    limit: int | None
    projected_total: float
    projected_total_lower80: float
    projected_total_upper80: float
    projected_remaining: float | None
    """Limit minus the projected total, not below zero; None for unlimited plans."""
    exhaustion_date: date | None
    """First day the month's calls are projected (median) to reach the limit; None if not."""
    exhaustion_earliest: date | None
    """10th percentile of the exhaustion day (None: fewer than 10% of futures run out)."""
    exhaustion_latest: date | None
    """90th percentile of the exhaustion day (None: over 10% of futures last the month)."""
    exhaustion_probability: float | None
    """Share of futures that reach the limit this month; None for unlimited plans."""
    recommended_plan: PlanOption | None


def project_month(
    forecast: Forecast,
    *,
    today: date,
    month: tuple[date, date],
    month_usage: Mapping[date, int],
    limit: int | None,
    plans: Sequence[PlanOption] = (),
) -> MonthProjection:
    """Project this month from `forecast` (which must start today and reach the month's end).

    `month` is the first and last day of today's month (the caller's calendar decides them);
    `month_usage` holds the calls counted against the quota on each day of this month so far,
    today included.
    """
    first_day, last_day = month
    if not first_day <= today <= last_day:
        raise ValueError("today must lie in the month")
    days_left = (last_day - today).days + 1
    if forecast.first_date != today or forecast.horizon < days_left:
        raise ValueError("the forecast must start today and reach the end of the month")
    usage = {day: int(n) for day, n in month_usage.items() if first_day <= day <= today}
    used_today = usage.get(today, 0)
    used = sum(usage.values())
    futures = forecast.paths[:, :days_left].copy()
    futures[:, 0] = np.maximum(futures[:, 0], used_today)
    # Cumulative calls at the end of each remaining day, in every future.
    cumulative = (used - used_today) + np.cumsum(futures, axis=1)
    totals = cumulative[:, -1]
    lower, median, upper = (
        float(q) for q in np.quantile(totals, [LOWER_QUANTILE, 0.5, UPPER_QUANTILE])
    )
    remaining = None if limit is None else max(float(limit) - median, 0.0)
    exhaustion: tuple[date | None, date | None, date | None, float | None] = (
        None,
        None,
        None,
        None,
    )
    if limit is not None:
        if used >= limit:
            day = _day_reached(usage, limit) or today
            exhaustion = (day, day, day, 1.0)
        else:
            exhaustion = _exhaustion(cumulative, limit, today)
    return MonthProjection(
        first_day=first_day,
        last_day=last_day,
        used=used,
        limit=limit,
        projected_total=median,
        projected_total_lower80=lower,
        projected_total_upper80=upper,
        projected_remaining=remaining,
        exhaustion_date=exhaustion[0],
        exhaustion_earliest=exhaustion[1],
        exhaustion_latest=exhaustion[2],
        exhaustion_probability=exhaustion[3],
        recommended_plan=recommend_plan(plans, upper),
    )


def _day_reached(usage: Mapping[date, int], limit: int) -> date | None:
    running = 0
    for day in sorted(usage):
        running += usage[day]
        if running >= limit:
            return day
    return None


def _exhaustion(
    cumulative: np.ndarray, limit: int, today: date
) -> tuple[date | None, date | None, date | None, float]:
    reached = cumulative >= limit
    # Index of the first day at the limit in each future; futures that never get there sort last.
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), np.iinfo(np.int64).max)
    ordered = np.sort(first)

    def at(quantile: float) -> date | None:
        index = int(ordered[min(int(np.ceil(quantile * ordered.size)) - 1, ordered.size - 1)])
        return today + timedelta(days=index) if index < cumulative.shape[1] else None

    probability = float(reached.any(axis=1).mean())
    return at(0.5), at(LOWER_QUANTILE), at(UPPER_QUANTILE), probability


def recommend_plan(plans: Sequence[PlanOption], monthly_calls: float) -> PlanOption | None:
    """The cheapest plan whose limit covers `monthly_calls` (plans in ascending order).

    Plans with a price come first, cheapest first; custom-priced plans (enterprise) are the last
    resort. None when no plan is given or none covers it.
    """

    def cost(plan: PlanOption) -> tuple[int, float]:
        return (0, plan.price_usd) if plan.price_usd is not None else (1, 0.0)

    for plan in sorted(plans, key=cost):
        if plan.monthly_limit is None or plan.monthly_limit >= monthly_calls:
            return plan
    return None
