"""Thin Celery tasks: each names itself explicitly and calls a plain function."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import psycopg
from celery import current_app, shared_task
from celery.app.task import Task
from psycopg_pool import PoolTimeout

from events.ingest import ingest_message
from events.publisher import INGEST_TASK
from events.retention import maintain
from timo_hub.accounts.service import AccountNotFoundError
from timo_hub.platform.heartbeat import record_heartbeat
from timo_hub.quota import metrics as quota_metrics
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.period import period_containing
from timo_hub.usage import forecasts, projection_refresh

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY_SECONDS = 30


@shared_task(name="timo.workers.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Stamp the worker heartbeat that `/api/v1/health` reports."""
    return record_heartbeat(current_app.runtime.redis).isoformat()


@shared_task(name=INGEST_TASK, bind=True, max_retries=None, ignore_result=True)
def ingest_events(self: Task, lines: object, batch: object = None) -> dict[str, int]:
    """Append a batch of events to the log; acknowledged only after the commit (acks_late).

    While PostgreSQL is unreachable the batch is retried (a copy is queued, then this message is
    acknowledged) with growing delays; the log ignores anything it already has, so a retry after
    an ambiguous failure cannot double-count.
    """
    app = current_app
    try:
        result = ingest_message(app.runtime.database, app.partitions, lines, batch)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        delay = min(2 ** min(self.request.retries, 5) * 0.5, MAX_RETRY_DELAY_SECONDS)
        raise self.retry(exc=exc, countdown=delay) from exc
    return {"appended": result.appended, "duplicates": result.duplicates}


@shared_task(name="timo.events.maintain_partitions", ignore_result=True)
def maintain_partitions() -> dict[str, object]:
    """Create the coming months' event partitions and drop those past retention."""
    app = current_app
    with app.runtime.database.connection() as conn:
        result = maintain(
            conn,
            app.partitions,
            datetime.now(UTC).date(),
            app.runtime.settings.events_retention_months,
        )
    return {"created": result.created, "dropped": result.dropped}


@shared_task(name="timo.quota.reconcile", ignore_result=True)
def reconcile_quota() -> dict[str, object]:
    """Raise every counter of this month that is below what PostgreSQL proves; log the repairs.

    Safe under traffic: it only raises a counter to a count it can prove, never touches the
    ledger, and leaves missing or foreign counters to the rebuild (`timo_hub.quota.reconcile`).
    """
    runtime = current_app.runtime
    period = period_containing(datetime.now(UTC))
    result = reconciliation.reconcile(runtime, period)
    reconciliation.forget_departed_writers(runtime)
    restored = sum(r.after - r.before for r in result.repairs)
    quota_metrics.RECONCILE_RUNS.inc()
    quota_metrics.COUNTERS_REPAIRED.inc(len(result.repairs))
    quota_metrics.CALLS_RESTORED.inc(restored)
    if result.dead_leases_ended:
        logger.warning(
            "quota reconcile %s: ended %d lease(s) of web processes gone without ending them",
            period.label,
            result.dead_leases_ended,
        )
    if result.repairs:
        logger.warning(
            "quota reconcile %s: raised %d counter(s) by %d call(s) in all: %s",
            period.label,
            len(result.repairs),
            restored,
            ", ".join(f"{r.account_id} {r.before}->{r.after}" for r in result.repairs),
        )
    else:
        logger.info(
            "quota reconcile %s: %d counter(s) checked, none behind",
            period.label,
            len(result.checks),
        )
    return {"period": period.label, "checked": len(result.checks), "repaired": len(result.repairs)}


@shared_task(name="timo.analytics.forecast_all", ignore_result=True)
def forecast_all() -> dict[str, int]:
    """The nightly run: queue one forecast per active account, and prune old forecasts.

    One task per account spreads the work over every worker, and a failure stays with its
    account.
    """
    app = current_app
    now = datetime.now(UTC)
    account_ids = forecasts.active_account_ids(app.runtime.database)
    for account_id in account_ids:
        forecast_account.apply_async((str(account_id), now.isoformat()))
    pruned = forecasts.prune(app.runtime.database, now.date())
    return {"queued": len(account_ids), "pruned": pruned}


@shared_task(name="timo.analytics.forecast_account", bind=True, max_retries=3, ignore_result=True)
def forecast_account(self: Task, account_id: str, as_of: str | None = None) -> dict[str, object]:
    """Compute, store and alert on one account's default forecast (the nightly job's unit).

    `as_of` is when the run was scheduled: a task that waited in the queue past midnight still
    forecasts for the day it was meant for. A database outage retries; any other failure is
    logged with the account id and dropped, so it cannot hold up the other accounts.
    """
    now = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    try:
        outcome = forecasts.run_nightly(current_app.runtime.database, uuid.UUID(account_id), now)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    except AccountNotFoundError:
        logger.warning("forecast skipped: account %s no longer exists", account_id)
        return {"account_id": account_id, "skipped": True}
    except Exception:
        logger.exception("forecast failed for account %s", account_id)
        return {"account_id": account_id, "failed": True}
    return {"account_id": account_id, "model": outcome.model, "alerts": list(outcome.alerts_raised)}


@shared_task(name="timo.analytics.refresh_projections", ignore_result=True)
def refresh_projections() -> dict[str, int]:
    """Recompute the projections that have moved since the nightly run, and raise their alerts.

    Which accounts are due, and in what order, is decided in `timo_hub.usage.projection_refresh`;
    a run that finds none costs one query, and a long one ends before the next is due.
    """
    outcome = projection_refresh.refresh(current_app.runtime.database, datetime.now(UTC))
    logger.info(
        "projection refresh: %d account(s) due, %d refreshed, %d failed, %d left for the next "
        "run, %d alert(s) raised",
        outcome.due,
        outcome.refreshed,
        outcome.failed,
        outcome.deferred,
        outcome.alerts_raised,
    )
    return {
        "due": outcome.due,
        "refreshed": outcome.refreshed,
        "failed": outcome.failed,
        "deferred": outcome.deferred,
        "alerts": outcome.alerts_raised,
    }
