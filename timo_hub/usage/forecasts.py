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

import itertools
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from analytics.parameters import DEFAULT_HORIZON_DAYS, DEFAULT_MODEL, ModelChoice
from timo_hub.accounts import store as accounts_store
from timo_hub.accounts.service import AccountNotFoundError
from timo_hub.platform import months
from timo_hub.platform.db import Database
from timo_hub.quota.counting import counted_calls_by_account_and_day
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

# The database being unreachable: raised by `run_all`, never counted as an account's failure.
DATABASE_DOWN = (psycopg.OperationalError, PoolTimeout)

# The nightly run forecasts this many accounts per vectorized batch: large enough that the
# batch's per-day array operations cost little per account, small enough to hold a few tens of MB.
BATCH_ACCOUNTS = 200

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
    """`run_nightly` for each account, `BATCH_ACCOUNTS` at a time; one account's failure is
    logged and the rest go on.

    A batch is read in one transaction, forecast in one vectorized pass and stored in another;
    should anything in that fail, its accounts are run one by one, so that the failure stays
    with its account. PostgreSQL being unreachable is nobody's account: it is raised, with the
    accounts before it settled (`on_done`), for the caller to retry. Returns (succeeded, failed).
    """
    succeeded = failed = 0

    def finish(account_id: uuid.UUID, outcome: NightlyOutcome | None) -> None:
        nonlocal succeeded, failed
        if outcome is None:
            failed += 1
        else:
            succeeded += 1
        if on_done is not None:
            on_done(account_id, outcome)

    # (itertools.batched is Python 3.12.)
    remaining = iter(account_ids)
    while batch := list(itertools.islice(remaining, BATCH_ACCOUNTS)):
        try:
            outcomes = _run_batch(database, batch, now)
        except DATABASE_DOWN:
            # Not the accounts' failure: the caller retries (a chunk task from its checkpoint).
            raise
        except Exception:
            logger.exception(
                "forecast batch failed; running its %d account(s) one by one", len(batch)
            )
            outcomes = None
        if outcomes is not None:
            for account_id in batch:
                finish(account_id, outcomes.get(account_id))
            continue
        for account_id in batch:
            try:
                outcome: NightlyOutcome | None = run_nightly(database, account_id, now)
            except DATABASE_DOWN:
                raise
            except Exception:
                logger.exception("forecast failed for account %s", account_id)
                outcome = None
            finish(account_id, outcome)
    return succeeded, failed


def _run_batch(
    database: Database, account_ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, NightlyOutcome | None]:
    """The nightly forecast of a batch of accounts: None for those that failed (gone, or their
    alerts could not be recorded)."""
    with database.connection() as conn:
        found = accounts_store.get_accounts(conn, account_ids)
    accounts = [found[account_id] for account_id in account_ids if account_id in found]
    for account_id in account_ids:
        if account_id not in found:
            logger.warning("forecast skipped: account %s no longer exists", account_id)
    computed = _compute_and_store_many(
        database, accounts, days=DEFAULT_HORIZON_DAYS, model=DEFAULT_MODEL, now=now
    )
    outcomes: dict[uuid.UUID, NightlyOutcome | None] = {}
    for account, (body, projection) in zip(accounts, computed, strict=True):
        try:
            raised = raise_alerts(database, account.id, projection)
        except DATABASE_DOWN:
            raise
        except Exception:
            logger.exception("alerts failed for account %s", account.id)
            outcomes[account.id] = None
            continue
        outcomes[account.id] = NightlyOutcome(account.id, body.model, raised)
    return outcomes


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
    return _compute_and_store_many(database, [account], days=days, model=model, now=now)[0]


def _compute_and_store_many(
    database: Database,
    accounts: list[accounts_store.Account],
    *,
    days: int,
    model: ModelChoice,
    now: datetime,
) -> list[tuple[ForecastOut, MonthProjection]]:
    """Forecast each account, project its month and store the body, in the accounts' order:
    one transaction reads every account's history, one stores every body."""
    # Imported here, not at module level: a web worker should not pay for statsmodels at boot
    # (gunicorn's master imports it once before forking: `timo_hub.gunicorn_config`).
    from analytics.forecasting import forecast, forecast_many
    from analytics.history import daily_history
    from analytics.month_projection import PlanOption, project_month

    if not accounts:
        return []
    today = now.date()
    ids = [account.id for account in accounts]
    with database.connection() as conn:
        # One statement, so the histories, today's calls and the digests below are one snapshot.
        counts = counted_calls_by_account_and_day(conn, ids, history_first(today), today)
        # An account with a monthly limit of its own (a contract) keeps it on any plan: no plan
        # change would help, so none is recommended.
        contracted = accounts_store.with_own_monthly_limit(conn, ids)
        plans = [
            PlanOption(
                plan.name,
                plan.monthly_limit,
                None if plan.price_usd is None else float(plan.price_usd),
            )
            for plan in accounts_store.list_plans(conn)
        ]
    pasts = [
        {day: n for day, n in counts[account.id].items() if day < today} for account in accounts
    ]
    histories = [
        daily_history(
            past,
            last_day=today - timedelta(days=1),
            partial_day=account.created_at.astimezone(UTC).date(),
            max_days=HISTORY_DAYS,
        )
        for account, past in zip(accounts, pasts, strict=True)
    ]
    first_day, last_day = months.month_start(today), months.last_day(today)
    horizon = max(days + 1, months.days_to_month_end(today))
    if model == "auto":
        results = forecast_many(histories, horizon, first_dates=[today] * len(histories))
    else:
        results = [forecast(history, horizon, model, first_date=today) for history in histories]
    computed = []
    rows = []
    for account, past, result in zip(accounts, pasts, results, strict=True):
        account_counts = counts[account.id]
        projection = project_month(
            result,
            today=today,
            month=(first_day, last_day),
            month_usage={day: n for day, n in account_counts.items() if day >= first_day},
            limit=account.monthly_limit,
            plans=[] if account.id in contracted else plans,
        )
        body = forecast_body(result, projection, days=days, requested_model=model, generated_at=now)
        computed.append((body, projection))
        rows.append(
            forecast_store.forecast_row(
                account.id,
                today,
                days,
                model,
                account.monthly_limit,
                now,
                SCHEMA_VERSION,
                body.model_dump(mode="json"),
                forecast_store.history_digest(past),
                account_counts.get(today, 0),
            )
        )
    with database.connection() as conn:
        forecast_store.save_forecasts(conn, rows)
    return computed
