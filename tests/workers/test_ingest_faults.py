"""Fault injection on ingestion: each test ends with log == projection == calls made.

Events are sent as real task messages to the real broker and ingested by real prefork workers;
workers are killed, duplicated and starved of PostgreSQL while they work.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from events.model import ApiCallRecorded
from events.publisher import EVENTS_QUEUE, INGEST_TASK, EventPublisher, producer_app
from tests.support.events import log_counts, make_event, projection_counts
from tests.support.waiting import eventually
from tests.support.worker import worker_process
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


def _send(settings: Settings, batches: list[list[ApiCallRecorded]]) -> None:
    app = producer_app(settings.effective_broker_url)
    with app.producer_or_acquire() as producer:
        for batch in batches:
            app.send_task(
                INGEST_TASK,
                args=[[e.to_json() for e in batch]],
                queue=EVENTS_QUEUE,
                producer=producer,
            )


def _purge(settings: Settings) -> None:
    from kombu import Queue

    app = producer_app(settings.effective_broker_url)
    with app.connection() as conn:  # not from the pool: an outage test may have killed those
        for name in (EVENTS_QUEUE, "celery"):
            Queue(name, channel=conn.default_channel).declare()
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


def test_killing_the_pool_child_mid_batch_loses_and_doubles_nothing(
    settings: Settings, runtime: Runtime, clean_queues: None, tmp_path: Path
) -> None:
    events = _events(30_000)
    _send(settings, _batches(events, 2000))
    with worker_process(settings, tmp_path / "worker.log") as worker:
        eventually(lambda: sum(log_counts(runtime).values()) > 0, timeout=60)
        for child in worker.pool_children():
            child.send_signal(signal.SIGKILL)
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
    try:
        with worker_process(settings, log) as worker:
            eventually(lambda: sum(log_counts(runtime).values()) > 0, timeout=60)
            children = worker.pool_children()
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait(timeout=10)
            for child in children:  # an orphaned pool child would go on working: kill it too
                child.kill()
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
    _send(settings, batches)
    with (
        worker_process(settings, tmp_path / "a.log", concurrency=2),
        worker_process(settings, tmp_path / "b.log", concurrency=2),
    ):
        _assert_exact(runtime, events, timeout=120)
        time.sleep(1)  # let any straggling redelivery land: it must change nothing
        assert projection_counts(runtime) == _expected(events)
