"""Publishing usage events: spool on the request path, ship to the broker in the background.

`EventPublisher.publish()` costs the request one line written to the local spool. A shipper thread
per process sends spooled lines to the `events` queue in batches (one Celery task message per batch
of up to `BATCH_SIZE` events, over the app's pooled producer connection), with a short bounded
retry; when the broker still refuses, the events simply stay spooled and are retried with backoff
until it is back. Publishing is confirmed by the broker (AMQP publisher confirms; a Redis LPUSH
that returned) before the spool offset moves, so nothing is acknowledged that the broker lacks.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from pathlib import Path

from celery import Celery

from events import metrics
from events.model import ApiCallRecorded
from events.spool import Segment, Spool

logger = logging.getLogger(__name__)

INGEST_TASK = "timo.events.ingest"
EVENTS_QUEUE = "events"
BATCH_SIZE = 1000
BATCH_BYTES = 1024 * 1024
SHIP_INTERVAL_SECONDS = 0.05
ADOPT_INTERVAL_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 5.0
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def producer_app(broker_url: str) -> Celery:
    """A Celery app used only to send event batches (web processes run no tasks)."""
    app = Celery("timo-events-publisher", broker=broker_url, set_as_current=False)
    transport_options: dict[str, object] = {"max_retries": 2}
    if broker_url.startswith(("amqp", "pyamqp")):
        transport_options["confirm_publish"] = True
    app.conf.update(
        task_serializer="json",
        broker_transport_options=transport_options,
        broker_connection_timeout=2,
        task_publish_retry_policy=RETRY_POLICY,
    )
    return app


class EventPublisher:
    """This process's spool and the thread that ships it."""

    def __init__(self, spool_dir: Path, broker_url: str) -> None:
        self.spool = Spool(spool_dir)
        self._app = producer_app(broker_url)
        self._thread_pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self._replaying: set[Path] = set()

    def publish(self, event: ApiCallRecorded) -> None:
        """Record an event; it reaches the broker shortly, whatever happens to this process."""
        self.spool.append(event.to_json())
        if self._thread_pid != os.getpid():
            self._start()

    def ship_once(self) -> int:
        """Send everything spooled now; return how many events went out. Raises if the broker
        refuses (what was not sent stays spooled)."""
        shipped = 0
        for segment in self.spool.segments_to_ship():
            shipped += self._ship_segment(segment)
        if shipped and self._failing:
            logger.info("event publishing recovered")
        self._failing = False
        return shipped

    def drain(self, timeout: float = 10.0) -> bool:
        """Ship until the spool is empty or `timeout` passes (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.spool.adopt_orphans()
                self.ship_once()
            except Exception:
                time.sleep(0.1)
                continue
            if self.spool.backlog_bytes() == 0:
                return True
        return False

    def close(self) -> None:
        """Stop shipping, make one last attempt, keep the rest on disk for the next process."""
        self._stop.set()
        try:
            self.ship_once()
        except Exception as exc:
            logger.warning("events left in the spool at exit: %s", exc)
        self.spool.close()

    def _ship_segment(self, segment: Segment) -> int:
        shipped = 0
        while True:
            lines, consumed = segment.read_lines(BATCH_SIZE, BATCH_BYTES)
            if not lines and not consumed:
                break
            if lines:
                try:
                    self._send(lines)
                except Exception:
                    metrics.PUBLISH_FAILURES.inc()
                    if not self._failing:
                        metrics.EVENTS_SPOOLED.inc(len(lines))
                        self._replaying.add(segment.path)
                    self._failing = True
                    raise
                metrics.EVENTS_PUBLISHED.inc(len(lines))
                if segment.sealed or segment.path in self._replaying:
                    metrics.EVENTS_REPLAYED.inc(len(lines))
            segment.mark_shipped(consumed)
            shipped += len(lines)
        self._replaying.discard(segment.path)
        if segment.sealed and segment.size() <= segment.shipped:
            self.spool.retire(segment)
        return shipped

    def _send(self, lines: list[str]) -> None:
        self._app.send_task(
            INGEST_TASK, args=[lines], queue=EVENTS_QUEUE, retry=True, retry_policy=RETRY_POLICY
        )

    def _start(self) -> None:
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
            self._stop = threading.Event()
        threading.Thread(target=self._run, name="event-shipper", daemon=True).start()
        atexit.register(self.close)

    def _run(self) -> None:
        backoff = SHIP_INTERVAL_SECONDS
        next_adoption = 0.0
        while not self._stop.is_set():
            self.spool.appended_since_ship.wait(backoff)
            self.spool.appended_since_ship.clear()
            try:
                if time.monotonic() >= next_adoption:
                    self.spool.adopt_orphans()
                    next_adoption = time.monotonic() + ADOPT_INTERVAL_SECONDS
                self.ship_once()
                backoff = SHIP_INTERVAL_SECONDS
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.25), MAX_BACKOFF_SECONDS)
                logger.warning(
                    "broker refused events (%s); spooled, retrying in %.2fs", exc, backoff
                )
