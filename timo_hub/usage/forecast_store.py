"""Stored forecasts in PostgreSQL: one per account, UTC day, horizon and requested model.

Every function takes a connection first; the caller owns the transaction. A stored body is
returned only when it was written with the body version the caller asks for.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

FRESH_FORECAST = """
SELECT body FROM forecasts
WHERE account_id = %(account)s AND generated_on = %(day)s AND horizon_days = %(days)s
  AND requested_model = %(model)s AND monthly_limit IS NOT DISTINCT FROM %(limit)s
  AND schema_version = %(version)s
"""
SAVE_FORECAST = """
INSERT INTO forecasts
    (account_id, generated_on, horizon_days, requested_model, monthly_limit, generated_at,
     schema_version, body)
VALUES (%(account)s, %(day)s, %(days)s, %(model)s, %(limit)s, %(generated_at)s, %(version)s,
        %(body)s)
ON CONFLICT (account_id, generated_on, horizon_days, requested_model) DO UPDATE
SET monthly_limit = EXCLUDED.monthly_limit, generated_at = EXCLUDED.generated_at,
    schema_version = EXCLUDED.schema_version, body = EXCLUDED.body
"""
DELETE_FORECASTS_BEFORE = "DELETE FROM forecasts WHERE generated_on < %(day)s"


def fresh_forecast(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    day: date,
    days: int,
    model: str,
    limit: int | None,
    version: int,
) -> dict[str, Any] | None:
    """The body stored on `day` for this horizon, model, limit and body version, if any."""
    params = {
        "account": account_id,
        "day": day,
        "days": days,
        "model": model,
        "limit": limit,
        "version": version,
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
            "version": version,
            "body": Jsonb(body),
        },
    )


def delete_forecasts_before(conn: psycopg.Connection, day: date) -> int:
    """Drop forecasts generated before `day`; returns how many."""
    return conn.execute(DELETE_FORECASTS_BEFORE, {"day": day}).rowcount
