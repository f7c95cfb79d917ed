"""Thin Celery tasks: each names itself explicitly and calls a plain function."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from celery import current_app, shared_task
from celery.app.task import Task
from psycopg_pool import PoolTimeout

from events.ingest import ingest_message
from events.publisher import INGEST_TASK
from events.retention import maintain
from timo_hub.heartbeat import record_heartbeat

MAX_RETRY_DELAY_SECONDS = 30


@shared_task(name="timo.workers.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Stamp the worker heartbeat that `/api/v1/health` reports."""
    return record_heartbeat(current_app.runtime.redis).isoformat()


@shared_task(name=INGEST_TASK, bind=True, max_retries=None, ignore_result=True)
def ingest_events(self: Task, lines: object) -> dict[str, int]:
    """Append a batch of events to the log; acknowledged only after the commit (acks_late).

    While PostgreSQL is unreachable the batch is retried (a copy is queued, then this message is
    acknowledged) with growing delays; the log ignores anything it already has, so a retry after
    an ambiguous failure cannot double-count.
    """
    app = current_app
    try:
        result = ingest_message(app.runtime.database, app.partitions, lines)
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
