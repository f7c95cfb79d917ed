"""A worker killed with SIGKILL in the middle of the nightly forecast run, then a fresh one.

Real prefork workers on the real broker; the kill takes the main process and its pool at once,
so nothing is acknowledged or handed back: the broker redelivers the chunk in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import requests

from tests.api.test_metrics import sample
from tests.support.accounts import new_customer
from tests.support.processes import free_port
from tests.support.waiting import eventually
from tests.support.worker import WorkerProcess, worker_process
from tests.workers.test_forecast_runs import chunk_rows, finished, stored
from tests.workers.test_ingest_faults import _labelled_worker_env, _purge
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.usage import forecast_runs
from workers.celery_app import TimoCelery
from workers.tasks import forecast_all

pytestmark = pytest.mark.slow

ACCOUNTS = 240
CHUNK_SIZE = 20

# The worker's transactions waiting for a row lock (its checkpoint, held back by the test).
WAITING_FOR_LOCK = """
SELECT count(*) FROM pg_stat_activity
WHERE application_name = %s AND wait_event_type = 'Lock' AND query LIKE '%%forecast_run_chunks%%'
"""
CONNECTED = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"


@contextlib.contextmanager
def _checkpoints_held(settings: Settings, run_id: int, chunk: int) -> Iterator[bool]:
    """Hold the chunk's row lock, so that its execution cannot write its cursor down (as if its
    checkpoint were slow); yields False if the chunk was done before the lock was taken."""
    with psycopg.connect(settings.database_url or "") as conn:
        try:
            row = conn.execute(
                "SELECT 1 FROM forecast_run_chunks WHERE run_id = %s AND chunk = %s "
                "AND done_at IS NULL FOR UPDATE NOWAIT",
                (run_id, chunk),
            ).fetchone()
        except psycopg.errors.LockNotAvailable:  # its checkpoint was being written just then
            row = None
        try:
            yield row is not None
        finally:
            conn.rollback()


def _kill(worker: WorkerProcess) -> None:
    """SIGKILL the main process and its pool at once: nothing acknowledged, nothing handed back."""
    children = worker.pool_children()
    assert children, "the worker has no pool"
    worker.process.kill()
    for child in children:
        child.kill()
    worker.process.wait(timeout=10)
    for child in children:
        child.wait(timeout=10)


def test_a_worker_killed_mid_run_leaves_no_account_redone_or_skipped(
    settings: Settings, runtime: Runtime, celery_app: TimoCelery, tmp_path: Path
) -> None:
    """Guards against two defects. Without the resume rule (skip the accounts whose default
    forecast the run already stored), the redelivered chunk computes again the accounts its
    killed execution had stored but not yet written down: their `generated_at` moves, and their
    alerts are evaluated twice. Without redelivery of the chunk in flight (its message
    acknowledged before the work, or lost with no sweep), the run never finishes and the
    accounts of that chunk get no forecast."""
    ids = {new_customer(runtime).account.id for _ in range(ACCOUNTS)}
    _purge(settings)
    name, env = _labelled_worker_env()
    env["TIMO_FORECAST_CHUNK_SIZE"] = str(CHUNK_SIZE)
    today = datetime.now(UTC).date()
    celery_app.send_task(forecast_all.name)

    with worker_process(settings, tmp_path / "killed.log", env=env) as worker:
        eventually(lambda: forecast_runs.find(runtime.database, today) is not None, timeout=60)
        run = forecast_runs.find(runtime.database, today)
        assert run is not None and run.chunks == ACCOUNTS // CHUNK_SIZE
        victim = _hold_a_chunk_in_flight(settings, runtime, run.id, name, worker)

    # The killed execution's connection is gone with its transaction; nothing of it remains.

    def disconnected() -> bool:
        with runtime.database.connection() as conn:
            return conn.execute(CONNECTED, (name,)).fetchone() == (0,)

    eventually(disconnected, timeout=30)
    before = stored(runtime, today)
    rows = {row[0]: row for row in chunk_rows(runtime, run.id)}
    done_before = [chunk for chunk, row in rows.items() if row[7]]
    assert len(done_before) >= 2, "killed before two chunks were done"
    assert len(done_before) < run.chunks - 1, "killed too late to matter"
    in_flight = set(rows[victim][1])
    settled = set(rows[victim][1][: rows[victim][2]])
    stored_in_flight = in_flight & set(before)
    # Mid-chunk, proven: the killed execution had stored forecasts it had not written down.
    assert stored_in_flight - settled, "the kill did not land mid-chunk"
    assert all(generated_at >= run.started_at for generated_at, _ in before.values())

    port = free_port()
    fresh_env = {"TIMO_FORECAST_CHUNK_SIZE": str(CHUNK_SIZE), "TIMO_WORKER_METRICS_PORT": str(port)}
    with worker_process(settings, tmp_path / "fresh.log", env=fresh_env):
        # The chunk in flight comes back once the broker's visibility timeout (60 s) has passed.
        eventually(lambda: finished(runtime, today), timeout=240)
        text = ""

        def scraped() -> bool:
            nonlocal text
            with contextlib.suppress(requests.ConnectionError):
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return sample(text, "timo_forecast_run_finished_timestamp_seconds") > 0

        eventually(scraped, timeout=30)

    after = stored(runtime, today)
    # None skipped: every active account has the day's forecast, made by this run.
    assert set(after) == ids
    assert all(generated_at >= run.started_at for generated_at, _ in after.values())
    # None redone: what was stored before the kill is the same row version, untouched.
    assert {account: after[account] for account in before} == before
    rows = {row[0]: row for row in chunk_rows(runtime, run.id)}
    assert all(row[7] for row in rows.values())
    assert sum(row[3] + row[5] for row in rows.values()) == ACCOUNTS
    assert sum(row[4] for row in rows.values()) == 0
    # The redelivered execution skipped exactly what the killed one had stored unannounced.
    assert rows[victim][5] == len(stored_in_flight - settled)
    assert rows[victim][6] == 2
    assert sum(row[5] for chunk, row in rows.items() if chunk != victim) == 0

    # Progress is visible from the worker's metrics alone.
    assert sample(text, "timo_forecast_run_accounts", state="done") == ACCOUNTS
    assert sample(text, "timo_forecast_run_accounts", state="pending") == 0
    assert sample(text, "timo_forecast_run_accounts", state="failed") == 0
    assert sample(text, "timo_forecast_run_chunks", state="done") == run.chunks
    assert sample(text, "timo_forecast_accounts_total", outcome="skipped") == rows[victim][5]
    assert sample(text, "timo_forecast_accounts_total", outcome="succeeded") == ACCOUNTS - len(
        before
    )


def _hold_a_chunk_in_flight(
    settings: Settings, runtime: Runtime, run_id: int, name: str, worker: WorkerProcess
) -> int:
    """Once two chunks are done, catch the next one in flight, hold its checkpoints back until
    its execution has stored forecasts and waits to write its cursor, and kill the worker then.
    Returns the chunk."""
    caught: list[int] = []

    def caught_one() -> bool:
        rows = chunk_rows(runtime, run_id)
        assert not all(row[7] for row in rows), "the run finished before a chunk was caught"
        if sum(1 for row in rows if row[7]) < 2:
            return False
        in_flight = [row[0] for row in rows if row[6] > 0 and not row[7]]
        if not in_flight:
            return False
        with _checkpoints_held(settings, run_id, in_flight[0]) as held:
            if not held:
                return False

            def waiting() -> bool:
                # A transaction each time: PostgreSQL keeps one view of its activity per
                # transaction.
                with runtime.database.connection() as conn:
                    row = conn.execute(WAITING_FOR_LOCK, (name,)).fetchone()
                return row is not None and row[0] > 0

            eventually(waiting, timeout=60)
            _kill(worker)
        caught.append(in_flight[0])
        return True

    eventually(caught_one, timeout=120)
    return caught[0]
