"""SQL for usage analytics: reading the `usage_daily` projection, forecasts and alerts.

Every function takes a connection first; the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from events.event_log import NOT_COUNTED_STATUSES

if TYPE_CHECKING:
    from analytics.stats import KeyLabel, UsageSums

# One pass over the period's rows, summed three ways; GROUPING() says which sum a row is:
# 3 = by (day, status), 13 = by endpoint, 14 = by key.
USAGE_SUMS = """
SELECT GROUPING(day, status, endpoint, key_id), day, status, endpoint, key_id,
       sum(calls)::bigint, sum(duration_ms_sum)
FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
GROUP BY GROUPING SETS ((day, status), (endpoint), (key_id))
"""
BY_DAY_STATUS, BY_ENDPOINT, BY_KEY = 3, 13, 14
TOTAL_CALLS = """
SELECT coalesce(sum(calls), 0)::bigint FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
"""
COUNTED_BY_DAY = """
SELECT day, sum(calls)::bigint
FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
  AND status <> ALL(%(not_counted)s)
GROUP BY day
"""
KEY_LABELS = "SELECT id, name, prefix FROM api_keys WHERE account_id = %(account)s"
ACCOUNT = """
SELECT a.id, a.status, a.created_at, p.monthly_limit
FROM accounts a JOIN plans p ON p.name = a.plan
WHERE a.id = %(account)s
"""
ACTIVE_ACCOUNT_IDS = "SELECT id FROM accounts WHERE status = 'active' ORDER BY created_at, id"
PLANS = "SELECT name, monthly_limit, price_usd FROM plans ORDER BY sort_order"
FRESH_FORECAST = """
SELECT body FROM forecasts
WHERE account_id = %(account)s AND generated_on = %(day)s AND horizon_days = %(days)s
  AND requested_model = %(model)s AND monthly_limit IS NOT DISTINCT FROM %(limit)s
"""
SAVE_FORECAST = """
INSERT INTO forecasts
    (account_id, generated_on, horizon_days, requested_model, monthly_limit, generated_at, body)
VALUES (%(account)s, %(day)s, %(days)s, %(model)s, %(limit)s, %(generated_at)s, %(body)s)
ON CONFLICT (account_id, generated_on, horizon_days, requested_model) DO UPDATE
SET monthly_limit = EXCLUDED.monthly_limit, generated_at = EXCLUDED.generated_at,
    body = EXCLUDED.body
"""
DELETE_FORECASTS_BEFORE = "DELETE FROM forecasts WHERE generated_on < %(day)s"
RAISE_ALERT = """
INSERT INTO usage_alerts
    (account_id, month, kind, monthly_limit, used, projected_total, exhaustion_date)
VALUES (%(account)s, %(month)s, %(kind)s, %(limit)s, %(used)s, %(projected)s, %(exhaustion)s)
ON CONFLICT (account_id, month, kind) DO NOTHING
RETURNING id
"""
ALERTS = """
SELECT id, month, kind, raised_at, monthly_limit, used, projected_total, exhaustion_date
FROM usage_alerts
WHERE account_id = %(account)s
ORDER BY raised_at DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class AccountForForecast:
    """What a forecast needs to know about an account."""

    id: uuid.UUID
    status: str
    created_at: datetime
    monthly_limit: int | None


@dataclass(frozen=True)
class StoredAlert:
    """A projected-quota alert as stored."""

    id: int
    month: date
    kind: str
    raised_at: datetime
    monthly_limit: int
    used: int
    projected_total: int
    exhaustion_date: date | None


def usage_sums(
    conn: psycopg.Connection, account_id: uuid.UUID, period: str, today: date
) -> UsageSums:
    """The account's usage in `period` ending `today`, summed in the database."""
    # pandas only when asked: it would add most of a second to every web worker's boot.
    import pandas as pd

    from analytics.stats import UsageSums, period_bounds

    first, last = period_bounds(period, today)
    params = {"account": account_id, "first": first, "last": last}
    by_day_status, by_endpoint, by_key = [], [], []
    for grouping, day, status, endpoint, key_id, calls, duration in conn.execute(
        USAGE_SUMS, params
    ):
        if grouping == BY_DAY_STATUS:
            by_day_status.append((day, status, calls, duration))
        elif grouping == BY_ENDPOINT:
            by_endpoint.append((endpoint, calls))
        elif grouping == BY_KEY:
            by_key.append((key_id, calls))
    length = last - first + timedelta(days=1)
    # The previous period's first N-1 days: they line up with this period's complete days.
    previous = {"account": account_id, "first": first - length, "last": first - timedelta(days=2)}
    row = conn.execute(TOTAL_CALLS, previous).fetchone()
    return UsageSums(
        by_day_status=pd.DataFrame(
            by_day_status, columns=["day", "status", "calls", "duration_ms_sum"]
        ),
        by_endpoint=pd.DataFrame(by_endpoint, columns=["endpoint", "calls"]),
        by_key=pd.DataFrame(by_key, columns=["key_id", "calls"]),
        previous_total=int(row[0]) if row else 0,
    )


def counted_calls_by_day(
    conn: psycopg.Connection, account_id: uuid.UUID, first: date, last: date
) -> dict[date, int]:
    """Calls counted against the quota per day, for days `first..last` that have any."""
    params = {
        "account": account_id,
        "first": first,
        "last": last,
        "not_counted": list(NOT_COUNTED_STATUSES),
    }
    return {day: int(calls) for day, calls in conn.execute(COUNTED_BY_DAY, params)}


def key_labels(conn: psycopg.Connection, account_id: uuid.UUID) -> dict[uuid.UUID, KeyLabel]:
    """Name and display prefix of each of the account's keys, revoked ones included."""
    from analytics.stats import KeyLabel

    rows = conn.execute(KEY_LABELS, {"account": account_id})
    return {key_id: KeyLabel(name, prefix) for key_id, name, prefix in rows}


def account(conn: psycopg.Connection, account_id: uuid.UUID) -> AccountForForecast | None:
    """The account with its plan's limit, or None."""
    row = conn.execute(ACCOUNT, {"account": account_id}).fetchone()
    return AccountForForecast(*row) if row else None


def active_account_ids(conn: psycopg.Connection) -> list[uuid.UUID]:
    """Every active account, oldest first."""
    return [row[0] for row in conn.execute(ACTIVE_ACCOUNT_IDS)]


def plans(conn: psycopg.Connection) -> list[tuple[str, int | None, float | None]]:
    """Every plan as (name, monthly limit, price), in the plans' own order."""
    return [
        (name, limit, float(price) if price is not None else None)
        for name, limit, price in conn.execute(PLANS)
    ]


def fresh_forecast(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    day: date,
    days: int,
    model: str,
    limit: int | None,
) -> dict[str, Any] | None:
    """The forecast stored today for this horizon, model and limit, if any."""
    params = {"account": account_id, "day": day, "days": days, "model": model, "limit": limit}
    row = conn.execute(FRESH_FORECAST, params).fetchone()
    return row[0] if row else None


def save_forecast(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    day: date,
    days: int,
    model: str,
    limit: int | None,
    generated_at: datetime,
    body: dict[str, Any],
) -> None:
    """Store (or replace) the day's forecast for this horizon and model."""
    conn.execute(
        SAVE_FORECAST,
        {
            "account": account_id,
            "day": day,
            "days": days,
            "model": model,
            "limit": limit,
            "generated_at": generated_at,
            "body": Jsonb(body),
        },
    )


def delete_forecasts_before(conn: psycopg.Connection, day: date) -> int:
    """Drop forecasts generated before `day`; returns how many."""
    return conn.execute(DELETE_FORECASTS_BEFORE, {"day": day}).rowcount


def raise_alert(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    month: date,
    kind: str,
    *,
    limit: int,
    used: int,
    projected_total: int,
    exhaustion_date: date | None,
) -> bool:
    """Record an alert unless this account already has one of this kind this month."""
    row = conn.execute(
        RAISE_ALERT,
        {
            "account": account_id,
            "month": month,
            "kind": kind,
            "limit": limit,
            "used": used,
            "projected": projected_total,
            "exhaustion": exhaustion_date,
        },
    ).fetchone()
    return row is not None


def alerts(conn: psycopg.Connection, account_id: uuid.UUID, limit: int) -> list[StoredAlert]:
    """The account's alerts, newest first, at most `limit`."""
    rows = conn.execute(ALERTS, {"account": account_id, "limit": limit})
    return [StoredAlert(*row) for row in rows]
