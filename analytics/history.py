"""A daily call series ready for modelling.

Days without calls are real zeros and are filled in; days before the first call are not history
(the account did not exist or had not integrated yet) and are dropped. The first day of a new
account is usually partial (created mid-day), so it is dropped too: otherwise a model would read
the step from a partial day to a full one as growth, or the partial day as a drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

# Models see at most this much history: older usage says little about next month.
MAX_HISTORY_DAYS = 365


def daily_history(
    calls_by_day: Mapping[date, int] | pd.Series,
    *,
    last_day: date,
    partial_day: date | None = None,
    max_days: int = MAX_HISTORY_DAYS,
) -> pd.Series:
    """Calls per UTC day up to `last_day` inclusive, zero-filled, as a float series.

    `calls_by_day` may hold any days (later ones are ignored). `partial_day` is a day known to be
    incomplete, typically the account's creation day; it is dropped when it is the first day with
    calls. The result has a daily `DatetimeIndex` (possibly empty).
    """
    # Plain dates and a numpy array, not pandas' general conversions: the nightly run builds one
    # of these per account, and pandas' way cost more than the forecast itself.
    days = {_as_date(day): float(n) for day, n in calls_by_day.items() if n > 0}
    days = {day: n for day, n in days.items() if day <= last_day}
    if not days:
        return _empty()
    first = min(days)
    if first == partial_day:
        first += timedelta(days=1)
    first = max(first, last_day - timedelta(days=max_days - 1))
    if first > last_day:
        return _empty()
    values = np.zeros((last_day - first).days + 1)
    for day, n in days.items():
        if day >= first:
            values[(day - first).days] = n
    return pd.Series(values, index=pd.date_range(first, periods=values.size, freq="D"))


def _as_date(day: object) -> date:
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    return pd.Timestamp(day).date()  # type: ignore[arg-type]


def _empty() -> pd.Series:
    return pd.Series([], index=pd.DatetimeIndex([], freq="D"), dtype="float64")
