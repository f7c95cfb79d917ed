"""Usage statistics for the last 7, 30 or 90 UTC days, from `usage_daily` rows.

The input is already aggregated per day, key, route and status, so the work grows with the number
of days (and distinct keys and routes), never with the number of calls.

Status classes: `successful` is below 400, `client_errors` is 4xx except 429, `server_errors` is
5xx, `rejected` is 429 (over quota). They add up to `total_calls`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics.parameters import PERIODS, PeriodChoice

ROW_COLUMNS = ("day", "key_id", "endpoint", "status", "calls", "duration_ms_sum")
REJECTED_STATUS = 429


@dataclass(frozen=True)
class DailyUsage:
    """One day of the period."""

    day: date
    calls: int
    errors: int
    """4xx (except 429) and 5xx answers."""
    rejected: int


@dataclass(frozen=True)
class EndpointUsage:
    """Calls to one route template."""

    endpoint: str
    calls: int


@dataclass(frozen=True)
class KeyUsage:
    """Calls made with one key."""

    key_id: uuid.UUID
    name: str | None
    prefix: str | None
    calls: int


@dataclass(frozen=True)
class KeyLabel:
    """What a customer recognises a key by."""

    name: str
    prefix: str


@dataclass(frozen=True)
class UsageStats:
    """The answer of `/usage/stats`."""

    period: PeriodChoice
    start: date
    end: date
    total_calls: int
    successful: int
    client_errors: int
    server_errors: int
    rejected: int
    charged: int
    """Calls counted against the quota: all but refusals and our own failures (5xx)."""
    daily: list[DailyUsage]
    average_per_day: float
    peak_day: DailyUsage | None
    by_endpoint: list[EndpointUsage]
    by_key: list[KeyUsage]
    average_duration_ms: float | None
    change_vs_previous_period: float | None
    """Percent change against the previous period, over complete days (the period's first N-1
    days against the N-1 days before them); None when those had no calls."""


def period_bounds(period: PeriodChoice, today: date) -> tuple[date, date]:
    """First and last day (inclusive) of `period` ending today."""
    days = PERIODS[period]
    return today - timedelta(days=days - 1), today


@dataclass(frozen=True)
class UsageSums:
    """A period's usage summed three ways, and the period before it in total.

    The database computes these sums (`GROUPING SETS`), so what reaches Python is a few hundred
    rows however many keys, routes and statuses an account uses; `from_rows` computes the same
    from raw `usage_daily` rows.
    """

    by_day_status: pd.DataFrame
    """Columns `day`, `status`, `calls`, `duration_ms_sum`."""
    by_endpoint: pd.DataFrame
    """Columns `endpoint`, `calls`."""
    by_key: pd.DataFrame
    """Columns `key_id`, `calls`."""
    previous_total: int
    """Calls in the period just before, over its first N-1 days: the days that line up with
    the current period's complete ones (today is not over, so it is compared with nothing)."""

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, *, period: PeriodChoice, today: date) -> UsageSums:
        """Sum raw rows (`ROW_COLUMNS`); rows outside the two periods are ignored."""
        start, end = period_bounds(period, today)
        previous_start = start - timedelta(days=PERIODS[period])
        frame = rows.loc[:, list(ROW_COLUMNS)].copy()
        days = pd.to_datetime(frame["day"])
        current = frame[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]
        previous = frame[
            (days >= pd.Timestamp(previous_start))
            & (days < pd.Timestamp(start - timedelta(days=1)))
        ]
        return cls(
            by_day_status=current.groupby(["day", "status"], as_index=False)[
                ["calls", "duration_ms_sum"]
            ].sum(),
            by_endpoint=current.groupby("endpoint", as_index=False)[["calls"]].sum(),
            by_key=current.groupby("key_id", as_index=False)[["calls"]].sum(),
            previous_total=int(previous["calls"].sum()),
        )


def usage_stats(
    sums: UsageSums,
    *,
    period: PeriodChoice,
    today: date,
    keys: Mapping[uuid.UUID, KeyLabel],
    refused: tuple[int, ...] = (403, 429),
) -> UsageStats:
    """Statistics for `period` ending `today`, and the change against the period before it.

    `charged` counts what the quota charges: every answer but the `refused` statuses and 5xx
    (the caller says which are refusals; `timo_hub.quota.counting` is the rule)."""
    start, end = period_bounds(period, today)
    length = (end - start).days + 1
    # Plain numpy over the few hundred summed rows: pandas' per-operation overhead would cost
    # more than the arithmetic.
    frame = sums.by_day_status
    offsets = (
        pd.to_datetime(frame["day"]).to_numpy(dtype="datetime64[D]") - np.datetime64(start, "D")
    ).astype(np.int64)
    inside = (offsets >= 0) & (offsets < length)
    offsets = offsets[inside]
    status = frame["status"].to_numpy(dtype=np.int64)[inside]
    calls = frame["calls"].to_numpy(dtype=np.int64)[inside]
    duration = frame["duration_ms_sum"].to_numpy(dtype=float)[inside]
    is_rejected = status == REJECTED_STATUS
    is_client = (status >= 400) & (status < 500) & ~is_rejected
    is_server = status >= 500
    total = int(calls.sum())

    def per_day(mask: np.ndarray) -> np.ndarray:
        return np.bincount(offsets[mask], weights=calls[mask], minlength=length).astype(np.int64)

    day_calls = per_day(np.ones_like(inside[inside]))
    day_errors = per_day(is_client | is_server)
    day_rejected = per_day(is_rejected)
    daily = [
        DailyUsage(
            start + timedelta(days=i), int(day_calls[i]), int(day_errors[i]), int(day_rejected[i])
        )
        for i in range(length)
    ]
    peak = max(daily, key=lambda d: (d.calls, -d.day.toordinal())) if total else None

    by_endpoint = [
        EndpointUsage(str(endpoint), n)
        for endpoint, n in _ranked(sums.by_endpoint.set_index("endpoint")["calls"])
    ]
    by_key = []
    for key_id, n in _ranked(sums.by_key.set_index("key_id")["calls"]):
        label = keys.get(key_id)
        by_key.append(
            KeyUsage(key_id, label.name if label else None, label.prefix if label else None, n)
        )
    # Like for like: the period's complete days against the same number of days before them.
    previous_total = sums.previous_total
    complete = total - int(day_calls[-1])
    change = (complete - previous_total) / previous_total * 100.0 if previous_total else None
    return UsageStats(
        period=period,
        start=start,
        end=end,
        total_calls=total,
        successful=int(calls[status < 400].sum()),
        client_errors=int(calls[is_client].sum()),
        server_errors=int(calls[is_server].sum()),
        rejected=int(calls[is_rejected].sum()),
        charged=int(calls[~is_server & ~np.isin(status, refused)].sum()),
        daily=daily,
        average_per_day=total / len(daily),
        peak_day=peak,
        by_endpoint=by_endpoint,
        by_key=by_key,
        average_duration_ms=float(duration.sum()) / total if total else None,
        change_vs_previous_period=change,
    )


def _ranked(sums: pd.Series) -> list[tuple[Any, int]]:
    """Largest first; ties by name so the order is stable."""
    items = [(label, int(n)) for label, n in sums.items() if n > 0]
    return sorted(items, key=lambda item: (-item[1], str(item[0])))
