"""PostgreSQL restarted in immediate mode while a worker ingests: it recovers by itself, exactly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from events.publisher import EVENTS_QUEUE, INGEST_TASK, producer_app
from tests.support.events import log_counts, projection_counts
from tests.support.waiting import eventually
from tests.support.worker import worker_process
from tests.workers.test_ingest_faults import _batches, _events, _expected, _purge
from timo_hub.platform import migrate
from timo_hub.platform.embedded.postgres import start_postgres, stop_postgres
from timo_hub.platform.runtime import build_runtime
from timo_hub.platform.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.embedded]


def _crash_and_restart(data_dir: Path, down_for: float) -> None:
    from pgserver._commands import pg_ctl
    from pgserver.postgres_server import PostgresServer

    server = PostgresServer._instances[data_dir.resolve()]
    # Immediate mode: no checkpoint, clients cut off, crash recovery on start (a hard crash).
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
    time.sleep(down_for)  # batches arriving now fail and are retried
    with PostgresServer._lock:
        server.ensure_postgres_running()


def test_a_worker_survives_an_immediate_postgres_restart(
    settings: Settings, runtime: object, tmp_path: Path
) -> None:
    data_dir = tmp_path / "pg"
    url = start_postgres(data_dir, database="restart_test")
    migrate.migrate(url)
    own = settings.model_copy(update={"database_url": url})
    own_runtime = build_runtime(own)
    _purge(own)
    events = _events(60_000)
    app = producer_app(own.effective_broker_url)
    with app.producer_or_acquire() as producer:
        for batch in _batches(events, 1000):
            app.send_task(
                INGEST_TASK,
                args=[[e.to_json() for e in batch]],
                queue=EVENTS_QUEUE,
                producer=producer,
            )
    try:
        with worker_process(own, tmp_path / "worker.log"):
            eventually(lambda: sum(log_counts(own_runtime).values()) > 0, timeout=60)
            # Longer than the pool's 5 s wait for a connection, so that batches fail and retry.
            _crash_and_restart(data_dir, down_for=8)
            eventually(lambda: log_counts(own_runtime) == _expected(events), timeout=120)
            assert projection_counts(own_runtime) == _expected(events)
        assert "retry in" in (tmp_path / "worker.log").read_text().lower()
    finally:
        own_runtime.close()
        stop_postgres(data_dir)
