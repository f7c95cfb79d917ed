"""The naive baseline of `ingest.py`: one Celery task per event, one INSERT and one UPSERT each.

Not product code: it exists so the benchmark can show what batching buys, in the same run.
"""

from __future__ import annotations

import os

import psycopg
from celery import Celery
from celery.signals import worker_process_init

from events.model import ApiCallRecorded

app = Celery("naive", broker=os.environ["TIMO_BROKER_URL"])
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="naive_events",
)
_conn: psycopg.Connection | None = None


@worker_process_init.connect
def _connect(**_: object) -> None:
    global _conn
    _conn = psycopg.connect(os.environ["TIMO_DATABASE_URL"], autocommit=True)


@app.task(name="naive.ingest")
def ingest(line: str) -> None:
    """Append one event and bump its usage_daily row."""
    global _conn
    if _conn is None:
        _connect()
    e = ApiCallRecorded.parse(line)
    assert _conn is not None
    with _conn.transaction():
        inserted = _conn.execute(
            "INSERT INTO events (event_id, occurred_at, account_id, key_id, method, endpoint, "
            "status, duration_ms, request_id, schema_version) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (
                e.event_id,
                e.occurred_at,
                e.account_id,
                e.key_id,
                e.method,
                e.endpoint,
                e.status,
                e.duration_ms,
                e.request_id,
                e.schema_version,
            ),
        ).fetchone()
        if inserted:
            _conn.execute(
                "INSERT INTO usage_daily AS u VALUES (%s, %s, %s, %s, %s, 1, %s) "
                "ON CONFLICT (account_id, day, key_id, endpoint, status) DO UPDATE "
                "SET calls = u.calls + 1, "
                "duration_ms_sum = u.duration_ms_sum + EXCLUDED.duration_ms_sum",
                (e.account_id, e.occurred_at.date(), e.key_id, e.endpoint, e.status, e.duration_ms),
            )
