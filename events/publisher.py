"""Publishing usage events: spool on the request path, ship to the broker, confirm in the log.

`EventPublisher.publish()` costs the request one line written to the local spool. A shipper thread
per process sends spooled lines to the `events` queue in batches (one Celery task message per batch
of up to `BATCH_SIZE` events, over the app's pooled producer connection) with a short bounded
retry; when the broker still refuses, the events stay spooled and are retried with backoff.

Delivery is confirmed end to end: a shipped batch stays in the spool until the shipper has seen its
receipt, which the worker writes in the same transaction as the batch's events (one indexed query
a second for every batch in flight, whatever the event rate). A batch without a receipt after
`RESHIP_AFTER` seconds is shipped again. This covers what broker acknowledgements cannot: Redis's
consumer pops a message before recording it as unacknowledged, so a worker killed at that instant
loses it, and a Redis broker restarted without persistence loses its queue. Re-sent events that did
arrive are ignored by the log, so re-shipping never double-counts.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from kombu.entity import Queue

from events import event_log, pipeline_metrics
from events.model import ApiCallRecorded
from events.spool import Segment, Spool
from timo_hub.platform.broker_queues import mismatch_advice, publishing_settings, task_queue
from timo_hub.platform.db import Database

logger = logging.getLogger(__name__)

INGEST_TASK = "timo.events.ingest"
EVENTS_QUEUE = "events"
TASK_ROUTES = {INGEST_TASK: {"queue": EVENTS_QUEUE}}

BATCH_SIZE = 1000
BATCH_BYTES = 1024 * 1024
# After the first event of a quiet spell, wait this long for company before shipping: under load
# a message then carries hundreds of events instead of a few. A send costs ~0.7 ms of CPU, mostly
# in C code that holds the GIL (JSON, base64), so each send delays a request thread of this
# process by up to that much: at 0.1 s that was ~10 µs per event at 700 calls/s and ten such
# delays a second (the metered request's p99); at 0.5 s it is ~2 µs and two.
LINGER_SECONDS = 0.5
IDLE_WAIT_SECONDS = 0.5
ADOPT_INTERVAL_SECONDS = 10.0
VERIFY_INTERVAL_SECONDS = 1.0
# Receipts asked for per check, oldest batches first (one indexed query); more wait a second.
VERIFY_MAX_BATCHES = 1000
# Shipped but unconfirmed events this process keeps track of; beyond, the spool waits on disk.
MAX_IN_FLIGHT_EVENTS = 200_000
# Longer than the Redis visibility timeout (60 s) plus its restore cycle, so that a message the
# broker will still redeliver by itself is not sent twice for nothing.
RESHIP_AFTER_SECONDS = 90.0
MAX_BACKOFF_SECONDS = 5.0
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def task_queues(broker_url: str) -> tuple[Queue, Queue]:
    """The default "celery" queue and the `events` queue, as the broker of `broker_url` has them
    (quorum queues on RabbitMQ; see `timo_hub.platform.broker_queues`)."""
    return (task_queue("celery", broker_url), task_queue(EVENTS_QUEUE, broker_url))


def producer_app(broker_url: str) -> Celery:
    """A Celery app used only to send event batches (web processes run no tasks)."""
    app = Celery("timo-events-publisher", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_queues=task_queues(broker_url),
        task_routes=TASK_ROUTES,
        task_serializer="json",
        # Event lines repeat their keys and ids: zstd shrinks a batch ~8x for ~0.4 us per event,
        # less than the Redis transport's base64 of the uncompressed body cost, and the broker
        # (by default the Redis that admits every call) copies an eighth of the bytes.
        task_compression="zstd",
        broker_connection_timeout=2,
        task_publish_retry_policy=RETRY_POLICY,
        # Confirmed and persistent on RabbitMQ: a batch leaves the spool's "to send" only once
        # the broker has it on disk.
        **publishing_settings(broker_url, max_retries=2),
    )
    return app


@dataclass
class _InFlight:
    """A shipped batch whose receipt has not been seen yet."""

    segment: Segment
    start: int
    end: int
    events: int
    shipped_at: float
    reshipped: int = 0

    @property
    def batch_id(self) -> str:
        """The batch's name in its message and its receipt: the segment and the byte range
        (segment names are unique, and a re-send covers the same range)."""
        return f"{self.segment.path.stem}:{self.start}-{self.end}"


class EventPublisher:
    """This process's spool, the thread that ships it, and the check that it arrived."""

    def __init__(
        self,
        spool_dir: Path,
        broker_url: str,
        database: Database,
        *,
        reship_after: float = RESHIP_AFTER_SECONDS,
        sync_seconds: float = 0.0,
    ) -> None:
        self.spool = Spool(spool_dir)
        # How often the shipper forces spooled events to disk (0: never; the OS does, in time).
        self._sync_seconds = sync_seconds
        self._app = producer_app(broker_url)
        self._database = database
        self._reship_after = reship_after
        self._in_flight: deque[_InFlight] = deque()
        self._in_flight_events = 0
        self._thread_pid: int | None = None
        self._lock = threading.Lock()
        self._ship_lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self._closed = False

    def publish(self, event: ApiCallRecorded) -> None:
        """Record an event; it reaches the log shortly, whatever happens to this process."""
        self.publish_line(event.to_json())

    def ensure_room(self) -> None:
        """Raise `OSError` now if the spool could not take the next events (see
        `Spool.ensure_room`)."""
        self.spool.ensure_room()

    def publish_line(self, line: str) -> None:
        """Record an event already serialised by `ApiCallRecorded.to_json` (or its equal)."""
        self.spool.append(line)
        if self._thread_pid != os.getpid():
            self._start()

    def ship_once(self) -> int:
        """Send everything spooled and not yet sent; return how many events went out. Raises if
        the broker refuses (what was not sent stays spooled)."""
        shipped = 0
        with self._ship_lock:
            for segment in self.spool.segments_to_ship():
                shipped += self._ship_segment(segment)
        if shipped and self._failing:
            logger.info("event publishing recovered")
        self._failing = False
        return shipped

    def verify_once(self, now: float | None = None) -> int:
        """Confirm shipped batches that reached the log; re-send those overdue. Returns the
        number of events confirmed."""
        now = time.monotonic() if now is None else now
        confirmed = 0
        with self._ship_lock:
            pending = list(itertools.islice(self._in_flight, VERIFY_MAX_BATCHES))
        if not pending:
            return 0
        with self._database.connection() as conn:
            received = event_log.received_batches(conn, [b.batch_id for b in pending])
        for batch in pending:
            if batch.batch_id in received:
                with self._ship_lock:
                    try:
                        self._in_flight.remove(batch)
                    except ValueError:
                        continue  # a concurrent check (`drain` beside the thread) confirmed it
                    confirmed += batch.events
                    self._in_flight_events -= batch.events
                    self._advance_verified(batch.segment)
            # Each further re-send of a batch waits twice as long: during a long worker outage
            # the broker is not flooded with copies of what it already holds.
            elif now - batch.shipped_at >= self._reship_after * 2 ** min(batch.reshipped, 6):
                self._reship(batch, now)
        return confirmed

    def drain(self, timeout: float = 10.0, *, verified: bool = False) -> bool:
        """Ship (and, with `verified`, confirm) until nothing is left or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.spool.adopt_orphans()
                self.ship_once()
                if verified:
                    self.verify_once()
            except Exception:
                time.sleep(0.1)
                continue
            if self.spool.backlog_bytes(verified=verified) == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Stop; make one last attempt to ship; keep what is unconfirmed on disk for later."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._stop.set()
        try:
            self.ship_once()
            self.verify_once()
        except Exception as exc:
            logger.warning("events left in the spool at exit: %s", exc)
        self.spool.close()

    def _ship_segment(self, segment: Segment) -> int:
        shipped = 0
        while True:
            start = segment.shipped
            lines, consumed = segment.read_lines(BATCH_SIZE, BATCH_BYTES)
            if not lines and not consumed:
                break
            if self._in_flight_events >= MAX_IN_FLIGHT_EVENTS:
                # Workers are far behind (or down): stop handing the broker more and let the
                # spool, on disk, hold the rest, rather than this process's memory.
                break
            if lines:
                batch = _InFlight(segment, start, start + consumed, len(lines), time.monotonic())
                self._send_counted(lines, batch.batch_id, replay=segment.sealed)
                self._in_flight.append(batch)
                self._in_flight_events += batch.events
            segment.mark_shipped(consumed)
            shipped += len(lines)
        self._advance_verified(segment)
        return shipped

    def _reship(self, batch: _InFlight, now: float) -> None:
        lines, _ = batch.segment.read_range(batch.start, BATCH_SIZE, batch.end - batch.start)
        logger.warning(
            "%d events shipped %.0f s ago are not in the log; sending them again",
            len(lines),
            now - batch.shipped_at,
        )
        self._send_counted(lines, batch.batch_id, replay=True)
        batch.shipped_at = now
        batch.reshipped += 1

    def _send_counted(self, lines: list[str], batch_id: str, *, replay: bool) -> None:
        try:
            self._app.send_task(
                INGEST_TASK,
                args=[lines, batch_id],
                queue=EVENTS_QUEUE,
                retry=True,
                retry_policy=RETRY_POLICY,
            )
        except Exception:
            pipeline_metrics.PUBLISH_FAILURES.inc()
            if not self._failing:
                pipeline_metrics.EVENTS_SPOOLED.inc(len(lines))
            self._failing = True
            raise
        pipeline_metrics.EVENTS_PUBLISHED.inc(len(lines))
        if replay or self._failing:
            pipeline_metrics.EVENTS_REPLAYED.inc(len(lines))

    def _advance_verified(self, segment: Segment) -> None:
        # Verified is the start of the oldest unconfirmed batch of the segment (or all shipped).
        starts = [b.start for b in self._in_flight if b.segment is segment]
        upto = min(starts) if starts else segment.shipped
        if upto > segment.verified:
            segment.mark_verified(upto)
        if segment.sealed and segment.verified >= segment.size():
            self.spool.retire(segment)

    def _start(self) -> None:
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            # A deque of batches inherited through fork() belongs to the parent.
            self._in_flight = deque()
            self._in_flight_events = 0
            self._thread_pid = os.getpid()
            self._stop = threading.Event()
        threading.Thread(target=self._run, name="event-shipper", daemon=True).start()
        atexit.register(self.close)

    def _run(self) -> None:
        backoff = 0.0
        retry_at = next_adoption = next_verify = next_sync = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if retry_at > now:
                # Backing off from a failure; still up for each sync on time (item 5's promise
                # holds during a broker outage, whose backoff reaches MAX_BACKOFF_SECONDS).
                wake = min(retry_at, next_sync) if self._sync_seconds else retry_at
                self._stop.wait(max(wake - now, 0.0))
            elif self.spool.appended_since_ship.wait(IDLE_WAIT_SECONDS):
                self._stop.wait(LINGER_SECONDS)
            if self._sync_seconds and time.monotonic() >= next_sync:
                # First, and whatever shipping does: a broker outage must not leave events in
                # memory only, where an OS crash would take them.
                try:
                    self.spool.sync()
                except OSError as exc:
                    logger.warning("spooled events could not be synced to disk: %s", exc)
                next_sync = time.monotonic() + self._sync_seconds
            if time.monotonic() < retry_at:
                continue
            self.spool.appended_since_ship.clear()
            try:
                now = time.monotonic()
                if now >= next_adoption:
                    self.spool.adopt_orphans()
                    next_adoption = now + ADOPT_INTERVAL_SECONDS
                self.ship_once()
                if now >= next_verify:
                    self.verify_once(now)
                    next_verify = now + VERIFY_INTERVAL_SECONDS
                backoff = 0.0
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.25), MAX_BACKOFF_SECONDS)
                retry_at = time.monotonic() + backoff
                logger.warning(
                    "events stay spooled (%s); retrying in %.2fs",
                    mismatch_advice(exc) or exc,
                    backoff,
                )
