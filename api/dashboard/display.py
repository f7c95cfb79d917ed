"""What the pages show, shaped from the domain's results: chart rows, plain-word summaries.

Each chart on a page is drawn from the table that carries its data (`static/dashboard.js` reads
the table), so a row here is both the chart's point and its text equivalent.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

from flask import Flask

from timo_hub.quota.admission import Admission, window_name
from timo_hub.usage.forecast_body import AccuracyOut, ForecastOut


@dataclass(frozen=True)
class MonthDay:
    """One day of this month: its calls so far, or its forecast with the 80% band."""

    day: date
    calls: int | None
    predicted: float | None
    lower80: float | None
    upper80: float | None


@dataclass(frozen=True)
class Gauge:
    """The quota gauge: used of limit, how full, and when the month resets."""

    used: int
    limit: int | None
    remaining: int | None
    percent: float | None
    resets_at: datetime

    @property
    def used_up(self) -> bool:
        """True when no call is left this month."""
        return self.limit is not None and self.used >= self.limit


@dataclass(frozen=True)
class BurstGauge:
    """The burst window's gauge: calls used of the limit in the current window (a minute on
    every plan today), and when the next window starts afresh."""

    limit: int
    used: int
    remaining: int
    percent: float
    window: str
    """The window in words ("minute", "10-second window")."""
    resets_at: datetime
    resets_in: int
    """Whole seconds from the look to the next window (at least 1)."""

    @property
    def used_up(self) -> bool:
        """True when the window admits no more calls."""
        return self.used >= self.limit


# What each kind of projected-quota alert means, in the page's words.
ALERT_WORDS = {
    "projected_80_percent": "Projected to pass 80% of the quota this month",
    "projected_exhaustion": "Projected to run out of quota before the month ends",
}


def epoch(day: date) -> int:
    """UTC midnight of `day` in epoch seconds (a chart's x)."""
    return calendar.timegm(day.timetuple())


def gauge(admission: Admission) -> Gauge:
    """The gauge of an account's month as the quota counter has it now."""
    percent = None
    if admission.limit is not None:
        percent = _percent(admission.used, admission.limit)
    return Gauge(
        used=admission.used,
        limit=admission.limit,
        remaining=admission.remaining,
        percent=percent,
        resets_at=datetime.fromtimestamp(admission.period.reset_epoch, UTC),
    )


def burst_gauge(admission: Admission) -> BurstGauge | None:
    """The gauge of the account's current burst window as Redis has it now; None when the
    account has no burst limit."""
    burst = admission.burst
    if burst is None:
        return None
    return BurstGauge(
        limit=burst.limit,
        used=burst.used,
        remaining=burst.remaining,
        percent=_percent(burst.used, burst.limit),
        window=window_name(burst.seconds),
        resets_at=datetime.fromtimestamp(burst.reset_epoch, UTC),
        resets_in=burst.reset_after,
    )


def _percent(used: int, limit: int) -> float:
    """How full a window is, rounded down to a tenth: "100.0%" only when nothing is left."""
    # A limit of 0 (no calls allowed) is full, not unlimited.
    share = used / limit if limit else 1.0
    return min(100.0, math.floor(1000 * share) / 10)


def month_days(
    counted: dict[date, int], forecast: ForecastOut | None, today: date
) -> list[MonthDay]:
    """Every day of `today`'s month: counted calls up to today, the forecast after it."""
    first = today.replace(day=1)
    last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    actual = {day: calls for day, calls in counted.items() if first <= day <= today}
    predicted = {d.date: d for d in forecast.daily} if forecast is not None else {}
    rows = []
    for n in range(first.day, last.day + 1):
        day = first.replace(day=n)
        ahead = predicted.get(day)
        rows.append(
            MonthDay(
                day=day,
                calls=actual.get(day, 0) if day <= today else None,
                predicted=ahead.predicted if ahead else None,
                lower80=ahead.lower80 if ahead else None,
                upper80=ahead.upper80 if ahead else None,
            )
        )
    return rows


def accuracy_words(accuracy: AccuracyOut | None) -> str:
    """The forecast's measured accuracy, said plainly."""
    if accuracy is None:
        return (
            "Not measured yet: the forecast is checked against this account's own past once "
            "there are a few weeks of history."
        )
    trials = "1 trial" if accuracy.origins == 1 else f"{accuracy.origins} trials"
    words = (
        f"Tested on this account's own past ({trials}, each forecasting "
        f"{accuracy.horizon_days} days ahead): "
    )
    if accuracy.total_error_pct is not None:
        words += f"the total was off by {accuracy.total_error_pct:.0f}% on average, and "
    better = "better" if accuracy.mase < 1 else "no better"
    words += (
        f"day by day it did {better} than assuming each day repeats the same weekday of last "
        f"week (scaled error {accuracy.mase:.2f}; below 1 is better)."
    )
    return words


def probability_words(probability: float | None) -> str:
    """A chance in words and figures, e.g. "likely (83%)"."""
    if probability is None:
        return "not applicable (unlimited plan)"
    percent = round(100 * probability)
    if probability >= 0.9:
        word = "very likely"
    elif probability >= 0.6:
        word = "likely"
    elif probability >= 0.4:
        word = "about even"
    elif probability >= 0.1:
        word = "unlikely"
    else:
        word = "very unlikely"
    return f"{word} ({percent}%)"


def register_filters(app: Flask) -> None:
    """Number and date formats for the templates."""
    app.add_template_filter(_count, "count")
    app.add_template_filter(_utc, "utc")
    app.add_template_filter(_iso, "iso")
    app.add_template_filter(_clock, "clock")
    app.add_template_filter(_day, "day")
    app.add_template_filter(epoch, "epoch")
    app.add_template_filter(window_name, "window")


def _count(value: float | None) -> str:
    if value is None:
        return ""
    return f"{round(value):,}"


def _utc(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


def _clock(value: datetime) -> str:
    """The time of day to the second, in UTC (a burst window's end)."""
    return value.astimezone(UTC).strftime("%H:%M:%S UTC")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(value: date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date()
    return value.strftime("%a %-d %b %Y")
