"""Stored forecasts in PostgreSQL: one per account, UTC day, horizon and requested model.

Every function takes a connection first; the caller owns the transaction. A stored body is
returned only when it was written with the body version the caller asks for, and only while the
history it was computed from is still what `usage_daily` holds: each row keeps a digest of the
counted calls per day it read (`history_digest`), and the read compares it with the same digest
of the table now, in the same statement.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from timo_hub.quota.counting import COUNTED_STATUS

# The digest of a history, computed here in SQL and in `history_digest` in Python: SHA-256 of
# `YYYY-MM-DD=calls` per day with counted calls, ascending, joined by commas (of "" when none).
# The two must agree byte for byte; a stored forecast is found again only if they do. The
# history's rows are read by the primary key of `usage_daily` (account, then day). The subquery
# is uncorrelated, so PostgreSQL runs it once, and only when a stored row matched the rest.
FRESH_FORECAST = f"""
SELECT body FROM forecasts
WHERE account_id = %(account)s AND generated_on = %(day)s AND horizon_days = %(days)s
  AND requested_model = %(model)s AND monthly_limit IS NOT DISTINCT FROM %(limit)s
  AND schema_version = %(version)s
  AND history_digest = (
      SELECT sha256(convert_to(coalesce(
          string_agg(to_char(day, 'YYYY-MM-DD') || '=' || calls, ',' ORDER BY day), ''), 'UTF8'))
      FROM (
          SELECT day, sum(calls)::bigint AS calls FROM usage_daily
          WHERE account_id = %(account)s AND day >= %(first)s AND day < %(day)s
            AND {COUNTED_STATUS}
          GROUP BY day
      ) AS history
  )
"""
SAVE_FORECAST = """
INSERT INTO forecasts
    (account_id, generated_on, horizon_days, requested_model, monthly_limit, generated_at,
     schema_version, body, history_digest, used_today)
VALUES (%(account)s, %(day)s, %(days)s, %(model)s, %(limit)s, %(generated_at)s, %(version)s,
        %(body)s, %(digest)s, %(used_today)s)
ON CONFLICT (account_id, generated_on, horizon_days, requested_model) DO UPDATE
SET monthly_limit = EXCLUDED.monthly_limit, generated_at = EXCLUDED.generated_at,
    schema_version = EXCLUDED.schema_version, body = EXCLUDED.body,
    history_digest = EXCLUDED.history_digest, used_today = EXCLUDED.used_today
"""
DELETE_FORECASTS_BEFORE = "DELETE FROM forecasts WHERE generated_on < %(day)s"


def history_digest(calls_by_day: Mapping[date, int]) -> bytes:
    """The digest of a history of counted calls per day, as `FRESH_FORECAST` computes it."""
    text = ",".join(f"{day.isoformat()}={calls}" for day, calls in sorted(calls_by_day.items()))
    return hashlib.sha256(text.encode()).digest()


def fresh_forecast(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    day: date,
    days: int,
    model: str,
    limit: int | None,
    version: int,
    history_first: date,
) -> dict[str, Any] | None:
    """The body stored on `day` for this horizon, model, limit and body version, if any, and
    only if the counted calls of the days `history_first` to the day before `day` are still
    those it was computed from."""
    params = {
        "account": account_id,
        "day": day,
        "days": days,
        "model": model,
        "limit": limit,
        "version": version,
        "first": history_first,
    }
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
    version: int,
    body: dict[str, Any],
    digest: bytes,
    used_today: int,
) -> None:
    """Store (or replace) the day's forecast for this horizon and model, with the digest of the
    history it was computed from and the calls of `day` it knew of."""
    save_forecasts(
        conn,
        [
            forecast_row(
                account_id, day, days, model, limit, generated_at, version, body, digest, used_today
            )
        ],
    )


def forecast_row(
    account_id: uuid.UUID,
    day: date,
    days: int,
    model: str,
    limit: int | None,
    generated_at: datetime,
    version: int,
    body: dict[str, Any],
    digest: bytes,
    used_today: int,
) -> dict[str, Any]:
    """One forecast for `save_forecasts` (the arguments of `save_forecast`)."""
    return {
        "account": account_id,
        "day": day,
        "days": days,
        "model": model,
        "limit": limit,
        "generated_at": generated_at,
        "version": version,
        "body": Jsonb(body),
        "digest": digest,
        "used_today": used_today,
    }


def save_forecasts(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    """Store (or replace) many forecasts (`forecast_row`) in one round of statements."""
    with conn.cursor() as cur:
        cur.executemany(SAVE_FORECAST, rows)


def delete_forecasts_before(conn: psycopg.Connection, day: date) -> int:
    """Drop forecasts generated before `day`; returns how many."""
    return conn.execute(DELETE_FORECASTS_BEFORE, {"day": day}).rowcount
