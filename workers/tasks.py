"""Thin Celery tasks: each names itself explicitly and calls a plain function."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg
from celery import current_app, shared_task
from celery.app.task import Task
from psycopg_pool import PoolTimeout

from events.ingest import ingest_message
from events.publisher import INGEST_TASK
from events.retention import maintain
from timo_hub.platform.heartbeat import record_heartbeat
from timo_hub.quota import metrics as quota_metrics
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.period import period_containing
from timo_hub.usage import forecast_runs, forecasts, projection_refresh

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
    """The nightly run: plan today's run (or find it), queue a task per chunk, prune old ones.

    Planning is idempotent, and only chunks never queued are queued (or, once the run has gone
    quiet, those not done): beat firing twice or this message redelivered queues nothing twice.
    """
    app = current_app
    database = app.runtime.database
    now = datetime.now(UTC)
    run = forecast_runs.plan(database, now, chunk_size=app.runtime.settings.forecast_chunk_size)
    queued = _queue_chunks(run.id, now)
    pruned = forecasts.prune(database, now.date())
    forecast_runs.prune(database, now.date())
    forecast_runs.publish_status(database, run.for_day)
    return {"run": run.id, "accounts": run.accounts, "queued": queued, "pruned": pruned}


@shared_task(name="timo.analytics.forecast_sweep", ignore_result=True)
def forecast_sweep() -> dict[str, int]:
    """Re-queue the chunks of today's run whose messages are gone (`forecast_runs`: "Sweep")."""
    database = current_app.runtime.database
    now = datetime.now(UTC)
    run = forecast_runs.find(database, now.date())
    if run is None or run.finished_at is not None:
        return {"queued": 0}
    # A last chunk whose execution died between its commit and marking the run finished.
    forecast_runs.finish_if_complete(database, run.id, now)
    queued = _queue_chunks(run.id, now)
    if queued:
        logger.warning("forecast run %s: re-queued %d chunk(s) that had no task", run.id, queued)
    forecast_runs.publish_status(database, run.for_day)
    return {"run": run.id, "queued": queued}


def _queue_chunks(run_id: int, now: datetime) -> int:
    """Queue a chunk task for each chunk of the run that needs one; returns how many."""
    database = current_app.runtime.database
    chunks = forecast_runs.chunks_to_queue(database, run_id, now)
    for chunk in chunks:
        forecast_chunk.apply_async((run_id, chunk))
    # Noted after sending: killed in between, the redelivered caller sends them again (a copy of
    # a chunk is harmless, `forecast_runs`: "Ownership"), rather than never.
    forecast_runs.mark_queued(database, run_id, chunks, now)
    return len(chunks)


@shared_task(name="timo.analytics.forecast_chunk", bind=True, max_retries=None, ignore_result=True)
def forecast_chunk(self: Task, run_id: int, chunk: int) -> dict[str, object]:
    """Forecast a chunk of a nightly run from where it stands; queue the rest past the budget.

    Acknowledged after it returns (acks_late): a worker killed mid-chunk has the message
    redelivered, and the new execution skips the accounts the run already forecast. While
    PostgreSQL is unreachable the chunk is retried, from its last checkpoint.
    """
    database = current_app.runtime.database
    try:
        outcome = forecast_runs.run_chunk(database, run_id, chunk)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        delay = min(2 ** min(self.request.retries, 5) * 0.5, MAX_RETRY_DELAY_SECONDS)
        raise self.retry(exc=exc, countdown=delay) from exc
    if outcome.state == "unfinished":
        forecast_chunk.apply_async((run_id, chunk))
    if outcome.state not in {"expired", "gone"}:
        forecast_runs.publish_status(database, datetime.now(UTC).date())
    return {
        "run": run_id,
        "chunk": chunk,
        "state": outcome.state,
        "succeeded": outcome.succeeded,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "alerts": outcome.alerts_raised,
    }


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
