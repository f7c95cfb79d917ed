"""The publisher: batches are confirmed in the log, and a lost one is sent again."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from events.ingest import ingest
from events.partitions import PartitionRegistry
from events.publisher import MAX_BACKOFF_SECONDS, EventPublisher, producer_app
from tests.support.events import log_counts, make_event
from tests.support.waiting import eventually
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from workers.celery_app import TimoCelery


@pytest.fixture
def new_publisher(
    settings: Settings, runtime: Runtime, celery_app: TimoCelery, tmp_path: Path
) -> Iterator[Callable[..., EventPublisher]]:
    """Makes publishers spooling under `tmp_path`, on an emptied `events` queue; closes them."""
    with celery_app.connection() as conn:
        celery_app.control.purge(connection=conn)
    made: list[EventPublisher] = []

    def make(**options: float) -> EventPublisher:
        publisher = EventPublisher(
            tmp_path, settings.effective_broker_url, runtime.database, **options
        )
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def _spool(publisher: EventPublisher, count: int) -> list[str]:
    lines = [make_event().to_json() for _ in range(count)]
    for line in lines:
        publisher.spool.append(line)
    return lines


def test_one_check_confirms_every_batch_in_flight_whatever_the_event_rate(
    runtime: Runtime, celery_app: TimoCelery, new_publisher: Callable[..., EventPublisher]
) -> None:
    # Guards against confirmation that looked up at most 2,000 events a second: above that rate
    # the unconfirmed backlog grew without bound until shipping stalled at the in-flight cap.
    publisher = new_publisher()
    _spool(publisher, 6000)
    assert publisher.ship_once() == 6000
    celery_app.conf.broker_heartbeat = 0
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        eventually(lambda: sum(log_counts(runtime).values()) == 6000, timeout=30)
        assert publisher.verify_once() == 6000  # one check, every batch's receipt
    assert not publisher._in_flight
    assert publisher.spool.backlog_bytes(verified=True) == 0


def test_events_in_the_log_without_their_batch_receipt_are_not_confirmed(
    runtime: Runtime, celery_app: TimoCelery, new_publisher: Callable[..., EventPublisher]
) -> None:
    # The receipt, not the events, confirms a batch: it commits with the batch's own transaction.
    publisher = new_publisher()
    lines = _spool(publisher, 10)
    assert publisher.ship_once() == 10
    with celery_app.connection() as conn:
        celery_app.control.purge(connection=conn)
    ingest(runtime.database, PartitionRegistry(), lines)  # another path, no receipt
    assert publisher.verify_once() == 0
    (batch,) = publisher._in_flight
    ingest(runtime.database, PartitionRegistry(), lines, batch_id=batch.batch_id)
    assert publisher.verify_once() == 10
    assert sum(log_counts(runtime).values()) == 10  # the second ingest added nothing


def test_a_batch_the_broker_lost_is_shipped_again(
    runtime: Runtime, celery_app: TimoCelery, new_publisher: Callable[..., EventPublisher]
) -> None:
    publisher = new_publisher(reship_after=0.5)
    _spool(publisher, 25)
    assert publisher.ship_once() == 25
    (batch,) = publisher._in_flight
    with celery_app.connection() as conn:  # the broker loses the message
        assert celery_app.control.purge(connection=conn) >= 1
    celery_app.conf.broker_heartbeat = 0
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        # The check's own clock (`now`) rather than a sleep: just before `reship_after` the batch
        # is not in the log and not yet due; just after, it is sent again.
        assert publisher.verify_once(now=batch.shipped_at + 0.4) == 0
        assert batch.reshipped == 0
        assert publisher.verify_once(now=batch.shipped_at + 0.6) == 0  # not in the log: resent
        assert batch.reshipped == 1
        eventually(lambda: sum(log_counts(runtime).values()) == 25, timeout=15)
        eventually(lambda: not publisher._in_flight or publisher.verify_once() == 25)
    assert publisher.spool.backlog_bytes(verified=True) == 0


def test_while_workers_are_behind_the_backlog_waits_on_disk_not_in_memory(
    settings: Settings, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import events.publisher as publisher_module

    monkeypatch.setattr(publisher_module, "MAX_IN_FLIGHT_EVENTS", 1500)
    monkeypatch.setattr(publisher_module, "BATCH_SIZE", 500)
    publisher = EventPublisher(tmp_path, settings.effective_broker_url, runtime.database)
    try:
        for _ in range(4000):
            publisher.spool.append(make_event().to_json())
        assert publisher.ship_once() == 1500  # no worker confirms anything: shipping pauses
        assert publisher.ship_once() == 0
        assert publisher.spool.backlog_bytes() > 0
    finally:
        publisher.close()
        with producer_app(settings.effective_broker_url).connection() as conn:
            producer_app(settings.effective_broker_url).control.purge(connection=conn)


def test_spooled_events_are_forced_to_disk_even_while_the_broker_is_down(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the spool's promise on an OS crash (item 5): answered calls' events reach the disk
    # within `sync_seconds`, whatever shipping does; with a broker that refuses everything, the
    # shipper's failures used to be all its loop did. fsync is observed, not replaced.
    synced: list[int] = []
    real_fsync = os.fsync

    def observed_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", observed_fsync)
    publisher = EventPublisher(
        tmp_path, "amqp://guest:guest@127.0.0.1:1//", runtime.database, sync_seconds=0.1
    )
    # The shipper's sync passes, counted as they begin and end (the real one runs in between).
    passes = {"begun": 0, "ended": 0}
    real_sync = publisher.spool.sync

    def observed_sync() -> None:
        passes["begun"] += 1
        real_sync()
        passes["ended"] += 1

    monkeypatch.setattr(publisher.spool, "sync", observed_sync)
    # With the broker refusing, the shipper runs a pass only between backoff waits (up to
    # MAX_BACKOFF_SECONDS), not every `sync_seconds`: the bounds below are the backoff's.
    bound = MAX_BACKOFF_SECONDS * 4
    try:
        publisher.publish_line(make_event().to_json())
        (segment,) = publisher.spool.segments_to_ship()
        eventually(lambda: segment.fd in synced and segment.synced == segment.size(), bound)
        count = len(synced)
        # Nothing new appended: a pass that begins from here must fsync nothing. Wait until one
        # has run to its end, rather than sleep for a while in which none may have run.
        begun = passes["begun"]
        eventually(lambda: passes["ended"] > begun, bound)
        assert len(synced) == count
        publisher.publish_line(make_event().to_json())
        eventually(lambda: segment.synced == segment.size(), bound)
    finally:
        publisher.close()


@pytest.mark.slow
def test_the_sync_keeps_its_interval_while_the_shipper_backs_off(
    runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Guards the defect where the shipper, backing off from a refusing broker, slept through its
    # syncs: once the backoff reached MAX_BACKOFF_SECONDS, a call answered right after a failed
    # send reached the disk only ~5 s later, not within `sync_seconds` as promised.
    caplog.set_level(logging.WARNING, logger="events.publisher")
    publisher = EventPublisher(
        tmp_path, "amqp://guest:guest@127.0.0.1:1//", runtime.database, sync_seconds=0.1
    )
    longest = f"retrying in {MAX_BACKOFF_SECONDS:.2f}s"

    def backoffs_at_most() -> int:
        return sum(longest in record.getMessage() for record in caplog.records)

    try:
        publisher.publish_line(make_event().to_json())
        eventually(lambda: backoffs_at_most() > 0, timeout=MAX_BACKOFF_SECONDS * 6)
        seen = backoffs_at_most()
        eventually(lambda: backoffs_at_most() > seen, timeout=MAX_BACKOFF_SECONDS * 3)
        # Just after a failure: the shipper now waits MAX_BACKOFF_SECONDS before sending again.
        publisher.publish_line(make_event().to_json())
        (segment,) = publisher.spool.segments_to_ship()
        eventually(lambda: segment.synced == segment.size(), timeout=2.0)
    finally:
        publisher.close()
