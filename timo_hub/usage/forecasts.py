"""Forecasts for accounts: compute, store, serve fresh ones, raise projected-quota alerts.

A forecast is computed from full UTC days of counted calls (those that count against the quota)
up to yesterday; today's calls so far feed only the month's projection. It is stored as the JSON
body the API serves, keyed by account, UTC day, horizon and requested model, and served again for
the rest of that day unless the account's plan limit changed.

Holding a pooled connection while a model fits would starve the web process, so every function
reads in one short transaction, computes with no connection held, and writes in another.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from analytics.parameters import DEFAULT_HORIZON_DAYS, DEFAULT_MODEL, ModelChoice
from timo_hub.platform.db import Database
from timo_hub.usage import store

if TYPE_CHECKING:
    from analytics.forecasting import Forecast
    from analytics.month_projection import MonthProjection

logger = logging.getLogger(__name__)

# Stored forecasts older than this are deleted by the nightly run.
FORECAST_RETENTION_DAYS = 7
ALERT_SHARE = 0.8
# The alerts table stores calls as bigint; a projection is never allowed near that, but a stored
# number must not be able to fail the insert.
MAX_STORED_CALLS = 2**62
ALERT_80_PERCENT = "projected_80_percent"
ALERT_EXHAUSTION = "projected_exhaustion"


class AccountNotFound(LookupError):
    """No account with this id."""


@dataclass(frozen=True)
class NightlyOutcome:
    """What the nightly run did for one account."""

    account_id: uuid.UUID
    model: str
    alerts_raised: tuple[str, ...]


def get_forecast(
    database: Database, account_id: uuid.UUID, *, days: int, model: ModelChoice, now: datetime
) -> dict[str, Any]:
    """The account's forecast body: today's stored one if fresh, else computed and stored."""
    today = now.date()
    with database.connection() as conn:
        account = _account(conn, account_id)
        stored = store.fresh_forecast(conn, account_id, today, days, model, account.monthly_limit)
    if stored is not None:
        return stored
    body, _ = _compute_and_store(database, account, days=days, model=model, now=now)
    return body


def run_nightly(database: Database, account_id: uuid.UUID, now: datetime) -> NightlyOutcome:
    """Compute and store the account's default forecast and raise any alert it calls for."""
    with database.connection() as conn:
        account = _account(conn, account_id)
    body, projection = _compute_and_store(
        database, account, days=DEFAULT_HORIZON_DAYS, model=DEFAULT_MODEL, now=now
    )
    raised = raise_alerts(database, account_id, projection)
    return NightlyOutcome(account_id, body["model"], raised)


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
        return store.active_account_ids(conn)


def prune(database: Database, today: date) -> int:
    """Delete stored forecasts past retention; returns how many."""
    with database.connection() as conn:
        return store.delete_forecasts_before(conn, today - timedelta(days=FORECAST_RETENTION_DAYS))


def raise_alerts(
    database: Database, account_id: uuid.UUID, projection: MonthProjection
) -> tuple[str, ...]:
    """Record the alerts this projection calls for (each at most once per account and month)."""
    if projection.limit is None:
        return ()
    due = []
    if projection.projected_total >= ALERT_SHARE * projection.limit:
        due.append(ALERT_80_PERCENT)
    if projection.exhaustion_date is not None:
        due.append(ALERT_EXHAUSTION)
    raised = []
    with database.connection() as conn:
        for kind in due:
            if store.raise_alert(
                conn,
                account_id,
                projection.first_day,
                kind,
                limit=projection.limit,
                used=projection.used,
                projected_total=min(round(projection.projected_total), MAX_STORED_CALLS),
                exhaustion_date=projection.exhaustion_date,
            ):
                raised.append(kind)
    for kind in raised:
        logger.info("usage alert %s raised for account %s", kind, account_id)
    return tuple(raised)


def _account(conn: Any, account_id: uuid.UUID) -> store.AccountForForecast:
    account = store.account(conn, account_id)
    if account is None:
        raise AccountNotFound(str(account_id))
    return account


def _compute_and_store(
    database: Database,
    account: store.AccountForForecast,
    *,
    days: int,
    model: ModelChoice,
    now: datetime,
) -> tuple[dict[str, Any], MonthProjection]:
    # Imported here, not at module level: a web worker should not pay for statsmodels at boot
    # (gunicorn's master imports it once before forking: `timo_hub.gunicorn_config`).
    from analytics.forecasting import forecast
    from analytics.history import MAX_HISTORY_DAYS, daily_history
    from analytics.month_projection import PlanOption, days_to_month_end, project_month

    today = now.date()
    with database.connection() as conn:
        counts = store.counted_calls_by_day(
            conn, account.id, today - timedelta(days=MAX_HISTORY_DAYS + 1), today
        )
        plans = [PlanOption(*plan) for plan in store.plans(conn)]
    history = daily_history(
        {day: n for day, n in counts.items() if day < today},
        last_day=today - timedelta(days=1),
        partial_day=account.created_at.astimezone(UTC).date(),
    )
    horizon = max(days + 1, days_to_month_end(today))
    result = forecast(history, horizon, model, first_date=today)
    projection = project_month(
        result,
        today=today,
        month_usage={day: n for day, n in counts.items() if day >= today.replace(day=1)},
        limit=account.monthly_limit,
        plans=plans,
    )
    body = forecast_body(result, projection, days=days, requested_model=model, generated_at=now)
    with database.connection() as conn:
        store.save_forecast(conn, account.id, today, days, model, account.monthly_limit, now, body)
    return body, projection


def forecast_body(
    result: Forecast,
    projection: MonthProjection,
    *,
    days: int,
    requested_model: str,
    generated_at: datetime,
) -> dict[str, Any]:
    """The JSON body `/api/v1/usage/forecast` serves (and the forecasts table stores).

    `result` starts today; the body's `daily` covers the `days` dates after today.
    """
    daily = [
        {
            "date": day.isoformat(),
            "predicted": _calls(result.predicted[i]),
            "lower80": _calls(result.lower80[i]),
            "upper80": _calls(result.upper80[i]),
            "lower95": _calls(result.lower95[i]),
            "upper95": _calls(result.upper95[i]),
        }
        for i, day in enumerate(result.dates())
        if 1 <= i <= days
    ]
    plan = projection.recommended_plan
    accuracy = result.accuracy
    return {
        "model": result.model,
        "requested_model": requested_model,
        "history_days": result.history_days,
        "generated_at": generated_at.isoformat().replace("+00:00", "Z"),
        "days": days,
        "daily": daily,
        "current_month": {
            "start": projection.first_day.isoformat(),
            "end": projection.last_day.isoformat(),
            "used": projection.used,
            "limit": projection.limit,
            "projected_total": _calls(projection.projected_total),
            "projected_total_lower80": _calls(projection.projected_total_lower80),
            "projected_total_upper80": _calls(projection.projected_total_upper80),
            "projected_remaining": (
                None
                if projection.projected_remaining is None
                else _calls(projection.projected_remaining)
            ),
        },
        "exhaustion_date": _iso(projection.exhaustion_date),
        "exhaustion_range80": {
            "earliest": _iso(projection.exhaustion_earliest),
            "latest": _iso(projection.exhaustion_latest),
            "probability": (
                None
                if projection.exhaustion_probability is None
                else round(projection.exhaustion_probability, 3)
            ),
        },
        "recommended_plan": (
            None
            if plan is None
            else {
                "name": plan.name,
                "monthly_limit": plan.monthly_limit,
                "price_usd": plan.price_usd,
            }
        ),
        "accuracy": (
            None
            if accuracy is None
            else {
                "method": "rolling_origin",
                "origins": accuracy.origins,
                "horizon_days": accuracy.horizon_days,
                "mase": round(accuracy.mase, 3),
                "smape": round(accuracy.smape, 2),
                "total_error_pct": (
                    None if accuracy.total_error_pct is None else round(accuracy.total_error_pct, 2)
                ),
            }
        ),
        "note": result.note,
    }


def _calls(value: float) -> float:
    return round(float(value), 1)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None
