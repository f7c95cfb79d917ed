"""Fault injection on ingestion: each test ends with log == projection == calls made.

Events are sent as real task messages to the real broker and ingested by real prefork workers;
workers are killed, duplicated and starved of PostgreSQL while they work.
"""

from __future__ import annotations

import contextlib
import re
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from events.model import ApiCallRecorded
from events.publisher import EVENTS_QUEUE, INGEST_TASK, EventPublisher, producer_app
from tests.support.events import log_counts, make_event, projection_counts
from tests.support.waiting import eventually
from tests.support.worker import WorkerProcess, worker_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

pytestmark = pytest.mark.slow

ACCOUNTS = [uuid.uuid4() for _ in range(3)]


def _events(count: int) -> list[ApiCallRecorded]:
    start = datetime.now(UTC) - timedelta(days=2)
    return [
        make_event(ACCOUNTS[i % 3], occurred_at=start + timedelta(seconds=17 * i))
        for i in range(count)
    ]


def _expected(events: list[ApiCallRecorded]) -> Counter[tuple[str, str]]:
    unique = {e.event_id: e for e in events}.values()
    return Counter((str(e.account_id), e.occurred_at.date().isoformat()) for e in unique)


def _send(settings: Settings, batches: list[list[ApiCallRecorded]]) -> set[str]:
    """Send each batch as one task message; return the messages' task ids."""
    app = producer_app(settings.effective_broker_url)
    with app.producer_or_acquire() as producer:
        return {
            app.send_task(
                INGEST_TASK,
                args=[[e.to_json() for e in batch]],
                queue=EVENTS_QUEUE,
                producer=producer,
            ).id
            for batch in batches
        }


def _purge(settings: Settings) -> None:
    app = producer_app(settings.effective_broker_url)
    with app.connection() as conn:  # not from the pool: an outage test may have killed those
        for name in (EVENTS_QUEUE, "celery"):
            app.amqp.queues[name](conn.default_channel).declare()  # quorum on RabbitMQ
            conn.default_channel.queue_purge(name)


def _assert_exact(runtime: Runtime, events: list[ApiCallRecorded], timeout: float) -> None:
    expected = _expected(events)
    eventually(lambda: log_counts(runtime) == expected, timeout=timeout)
    assert projection_counts(runtime) == expected


@pytest.fixture
def clean_queues(settings: Settings, runtime: Runtime) -> None:
    _purge(settings)


def _batches(events: list[ApiCallRecorded], size: int) -> list[list[ApiCallRecorded]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


# A worker's transaction that has written a batch's rows and not committed them: the batch's one
# statement (`event_log.APPEND_AND_FOLD`) is running, or has run and awaits its COMMIT. The
# worker's connections carry its own `application_name` (libpq's PGAPPNAME).
OPEN_BATCH = """
SELECT backend_xid::text::bigint, pg_snapshot_xmax(pg_current_snapshot())::text::bigint
FROM pg_stat_activity
WHERE application_name = %s AND backend_xid IS NOT NULL AND query LIKE '%%INSERT INTO events %%'
"""


def _labelled_worker_env() -> tuple[str, dict[str, str]]:
    name = f"timo-test-worker-{uuid.uuid4().hex[:12]}"
    return name, {"PGAPPNAME": name}


def _open_batch(runtime: Runtime, application_name: str) -> int | None:
    """The full (epoch-qualified) id of an open batch transaction of the worker, if any."""
    with runtime.database.connection() as conn:
        row = conn.execute(OPEN_BATCH, (application_name,)).fetchone()
    if row is None:
        return None
    xid, xmax = row
    epoch = xmax >> 32
    if xid > xmax & 0xFFFFFFFF:  # the xid counter wrapped since that transaction began
        epoch -= 1
    return (epoch << 32) | xid


def _freeze_mid_batch(
    runtime: Runtime, worker: WorkerProcess, application_name: str, timeout: float
) -> tuple[psutil.Process, int]:
    """Stop (SIGSTOP) the pool child at an instant its batch is written and not committed.

    Stopped, the child cannot send the COMMIT, so a kill that follows lands mid-batch; returns
    the child and the batch's transaction id, whose outcome proves it (`_outcome`).
    """
    caught: list[tuple[psutil.Process, int]] = []

    def frozen_mid_batch() -> bool:
        for child in worker.pool_children():
            try:
                child.suspend()
            except psutil.NoSuchProcess:
                continue
            xid = _open_batch(runtime, application_name)
            if xid is not None:
                caught.append((child, xid))
                return True
            # A child can end between the two calls (the pool replacing a process as it
            # starts): it holds no batch then, and the next look finds its successor.
            with contextlib.suppress(psutil.NoSuchProcess):
                child.resume()
        return False

    eventually(frozen_mid_batch, timeout=timeout)
    return caught[0]


def _outcome(runtime: Runtime, xid: int) -> str:
    """`committed` or `aborted`, once PostgreSQL has settled transaction `xid`."""
    status: list[str] = []

    def settled() -> bool:
        with runtime.database.connection() as conn:
            row = conn.execute("SELECT pg_xact_status(%s::text::xid8)", (str(xid),)).fetchone()
        status[:] = [row[0] if row else "unknown"]
        return status[0] != "in progress"

    eventually(settled, timeout=60)  # the server notices its client is gone
    return status[0]


def _succeeded(logs: list[Path]) -> set[str]:
    """Task ids the workers logged as succeeded (Celery: `Task <name>[<id>] succeeded in …`)."""
    pattern = re.compile(r"Task " + re.escape(INGEST_TASK) + r"\[([0-9a-f-]+)\] succeeded")
    return {m for log in logs if log.exists() for m in pattern.findall(log.read_text())}


def test_killing_the_pool_child_mid_batch_loses_and_doubles_nothing(
    settings: Settings, runtime: Runtime, clean_queues: None, tmp_path: Path
) -> None:
    events = _events(30_000)
    _send(settings, _batches(events, 2000))
    name, env = _labelled_worker_env()
    with worker_process(settings, tmp_path / "worker.log", env=env) as worker:
        child, batch = _freeze_mid_batch(runtime, worker, name, timeout=60)
        child.send_signal(signal.SIGKILL)
        # Mid-batch, proven: the batch had written its rows (its transaction had an id) and the
        # kill ended it uncommitted. Killed before the batch, there is no such transaction;
        # after it, the transaction is committed.
        assert _outcome(runtime, batch) == "aborted", "the kill did not land mid-batch"
        _assert_exact(runtime, events, timeout=120)


def test_killing_the_main_process_then_restarting_recovers_everything(
    settings: Settings, runtime: Runtime, clean_queues: None, tmp_path: Path
) -> None:
    # Published the way web processes do: spooled, shipped, and confirmed in the log. A Redis
    # consumer killed between popping a message and recording it loses that message; the
    # publisher notices it never reached the log and sends it again.
    publisher = EventPublisher(
        tmp_path / "spool", settings.effective_broker_url, runtime.database, reship_after=5
    )
    events = _events(30_000)
    for event in events:
        publisher.publish(event)
    log = tmp_path / "worker.log"
    name, env = _labelled_worker_env()
    try:
        with worker_process(settings, log, env=env) as worker:
            # The pool child is held still mid-batch while its consumer (the main process) dies
            # holding the batch's message unacknowledged.
            _, batch = _freeze_mid_batch(runtime, worker, name, timeout=60)
            children = worker.pool_children()
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait(timeout=10)
            for child in children:  # an orphaned pool child would go on working: kill it too
                child.kill()
        assert _outcome(runtime, batch) == "aborted", "the kill did not land mid-batch"
        assert sum(log_counts(runtime).values()) < len(events), "killed too late to matter"
        with worker_process(settings, log):
            _assert_exact(runtime, events, timeout=120)
            assert publisher.drain(timeout=30, verified=True)
    finally:
        publisher.close()


def test_triple_delivery_to_two_workers_and_one_id_a_thousand_times(
    settings: Settings, runtime: Runtime, clean_queues: None, tmp_path: Path
) -> None:
    events = _events(6000)
    repeated = events[0]
    batches = _batches(events, 500) * 3 + [[repeated] * 10 for _ in range(100)]
    sent = _send(settings, batches)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with (
        worker_process(settings, logs[0], concurrency=2),
        worker_process(settings, logs[1], concurrency=2),
    ):
        _assert_exact(runtime, events, timeout=120)
        # The log is complete once the first copy of each batch is in; the other copies may still
        # be queued or running. Wait until every message has been ingested (each worker logs its
        # task's success), then check they changed nothing.
        eventually(lambda: _succeeded(logs) >= sent, timeout=120)
        assert log_counts(runtime) == _expected(events)
        assert projection_counts(runtime) == _expected(events)
