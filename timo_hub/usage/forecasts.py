"""Forecasts for accounts: compute, store, serve fresh ones, raise projected-quota alerts.

A forecast is computed from full UTC days of counted calls (those that count against the quota,
`timo_hub.quota.counting`) up to yesterday; today's calls so far feed only the month's projection.
It is stored as the body the API serves (`forecast_body.ForecastOut`), keyed by account, UTC day,
horizon and requested model, and served again for the rest of that day unless the account's plan
limit changed, the body's shape did (`forecast_body.SCHEMA_VERSION`), or the history it was
computed from did (an import, a late event or a backfill for a past day: the stored digest of the
history no longer matches, `forecast_store`). Callers that know the month's live count pass it,
and a body that has fallen behind it is recomputed too.

Holding a pooled connection while a model fits would starve the web process, so every function
reads in one short transaction, computes with no connection held, and writes in another.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
from pydantic import ValidationError

from analytics.parameters import DEFAULT_HORIZON_DAYS, DEFAULT_MODEL, ModelChoice
from timo_hub.accounts import store as accounts_store
from timo_hub.accounts.service import AccountNotFoundError
from timo_hub.platform import months
from timo_hub.platform.db import Database
from timo_hub.quota.counting import counted_calls_by_day
from timo_hub.usage import forecast_store
from timo_hub.usage.alerts import raise_alerts
from timo_hub.usage.forecast_body import SCHEMA_VERSION, ForecastOut, forecast_body

if TYPE_CHECKING:
    from analytics.month_projection import MonthProjection

logger = logging.getLogger(__name__)

# A stored forecast is recomputed for a caller who knows the month's live count once that count
# is ahead of the forecast's by more than 2% of the limit (and more than a handful of calls).
STALE_USED_SHARE = 0.02
STALE_USED_CALLS = 10

# Stored forecasts older than this are deleted by the nightly run.
FORECAST_RETENTION_DAYS = 7

# The most history a model sees (`analytics.history.daily_history`'s `max_days`), set here rather
# than read from there: this module is imported by web workers, which must not import pandas to
# serve a stored forecast. A forecast reads one day more (the account's partial first day may be
# that one), and its stored digest covers every day it read before today.
HISTORY_DAYS = 365


@dataclass(frozen=True)
class NightlyOutcome:
    """What the nightly run did for one account."""

    account_id: uuid.UUID
    model: str
    alerts_raised: tuple[str, ...]


def get_forecast(
    database: Database,
    account_id: uuid.UUID,
    *,
    days: int,
    model: ModelChoice,
    now: datetime,
    live_used: int | None = None,
) -> ForecastOut:
    """The account's forecast: today's stored one if fresh and current, else computed and stored.

    A stored body written by another version of the body's shape, or one that no longer
    validates, or one computed from a history that has changed since (the counted calls of any
    day before today), is recomputed rather than served. With `live_used` (the month's calls as
    the quota counter has them now), so is one made before the month moved on by more than
    `STALE_USED_SHARE` of the limit: a page or a client showing both must not show a gauge at
    its limit beside a projection from the morning.
    """
    today = now.date()
    with database.connection() as conn:
        account = _account(conn, account_id)
        stored = forecast_store.fresh_forecast(
            conn,
            account_id,
            today,
            days,
            model,
            account.monthly_limit,
            SCHEMA_VERSION,
            history_first(today),
        )
    if stored is not None:
        try:
            body = ForecastOut.model_validate(stored)
        except ValidationError as exc:
            logger.warning(
                "stored forecast of account %s does not validate, recomputing: %s", account_id, exc
            )
        else:
            if live_used is None or not _behind(body, live_used):
                return body
    body, _ = _compute_and_store(database, account, days=days, model=model, now=now)
    return body


def _behind(body: ForecastOut, live_used: int) -> bool:
    """True when the month has moved on since `body` was made (more calls than it knew of)."""
    scale = body.current_month.limit or max(body.current_month.used, 1)
    return live_used - body.current_month.used > max(STALE_USED_CALLS, STALE_USED_SHARE * scale)


def run_nightly(database: Database, account_id: uuid.UUID, now: datetime) -> NightlyOutcome:
    """Compute and store the account's default forecast and raise any alert it calls for."""
    with database.connection() as conn:
        account = _account(conn, account_id)
    body, projection = _compute_and_store(
        database, account, days=DEFAULT_HORIZON_DAYS, model=DEFAULT_MODEL, now=now
    )
    raised = raise_alerts(database, account_id, projection)
    return NightlyOutcome(account_id, body.model, raised)


def run_all(
    database: Database,
    account_ids: Iterable[uuid.UUID],
    now: datetime,
    on_done: Callable[[uuid.UUID, NightlyOutcome | None], None] | None = None,
) -> tuple[int, int]:
    """`run_nightly` for each account; one account's failure is logged and the rest go on.

    Returns (succeeded, failed).
    """
    succeeded = failed = 0
    for account_id in account_ids:
        outcome: NightlyOutcome | None = None
        try:
            outcome = run_nightly(database, account_id, now)
            succeeded += 1
        except Exception:
            failed += 1
            logger.exception("forecast failed for account %s", account_id)
        if on_done is not None:
            on_done(account_id, outcome)
    return succeeded, failed


def active_account_ids(database: Database) -> list[uuid.UUID]:
    """Accounts the nightly run covers."""
    with database.connection() as conn:
        return accounts_store.active_account_ids(conn)


def prune(database: Database, today: date) -> int:
    """Delete stored forecasts past retention; returns how many."""
    with database.connection() as conn:
        return forecast_store.delete_forecasts_before(
            conn, today - timedelta(days=FORECAST_RETENTION_DAYS)
        )


def history_first(today: date) -> date:
    """The first day of history a forecast made on `today` reads."""
    return today - timedelta(days=HISTORY_DAYS + 1)


def _account(conn: psycopg.Connection, account_id: uuid.UUID) -> accounts_store.Account:
    account = accounts_store.get_account(conn, account_id)
    if account is None:
        raise AccountNotFoundError(f"No account with id {account_id}.")
    return account


def _compute_and_store(
    database: Database,
    account: accounts_store.Account,
    *,
    days: int,
    model: ModelChoice,
    now: datetime,
) -> tuple[ForecastOut, MonthProjection]:
    # Imported here, not at module level: a web worker should not pay for statsmodels at boot
    # (gunicorn's master imports it once before forking: `timo_hub.gunicorn_config`).
    from analytics.forecasting import forecast
    from analytics.history import daily_history
    from analytics.month_projection import PlanOption, project_month

    today = now.date()
    with database.connection() as conn:
        # One statement, so the history, today's calls and the digest below are one snapshot.
        counts = counted_calls_by_day(conn, account.id, history_first(today), today)
        # An account with a monthly limit of its own (a contract) keeps it on any plan: no plan
        # change would help, so none is recommended.
        contracted = "month" in accounts_store.limit_overrides(conn, account.id)
        plans = [
            PlanOption(
                plan.name,
                plan.monthly_limit,
                None if plan.price_usd is None else float(plan.price_usd),
            )
            for plan in accounts_store.list_plans(conn)
            if not contracted
        ]
    past = {day: n for day, n in counts.items() if day < today}
    history = daily_history(
        past,
        last_day=today - timedelta(days=1),
        partial_day=account.created_at.astimezone(UTC).date(),
        max_days=HISTORY_DAYS,
    )
    first_day, last_day = months.month_start(today), months.last_day(today)
    horizon = max(days + 1, months.days_to_month_end(today))
    result = forecast(history, horizon, model, first_date=today)
    projection = project_month(
        result,
        today=today,
        month=(first_day, last_day),
        month_usage={day: n for day, n in counts.items() if day >= first_day},
        limit=account.monthly_limit,
        plans=plans,
    )
    body = forecast_body(result, projection, days=days, requested_model=model, generated_at=now)
    with database.connection() as conn:
        forecast_store.save_forecast(
            conn,
            account.id,
            today,
            days,
            model,
            account.monthly_limit,
            now,
            SCHEMA_VERSION,
            body.model_dump(mode="json"),
            forecast_store.history_digest(past),
            counts.get(today, 0),
        )
    return body, projection
