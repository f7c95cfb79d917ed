"""Each web process's quota sync thread: writes the ledger, answers and finishes rebuilds.

Every `CYCLE_SECONDS` the thread numbers the rebuilds this process has started, answers the
highest rebuild request issued by anyone (waiting for calls in flight, then writing the whole
tally), otherwise writes whatever tally it holds, beats at least every `HEARTBEAT_SECONDS`, and
seeds the counters whose barrier has passed. A rebuild started here wakes it at once (`wake`).
Requests are read from PostgreSQL, not Redis: the thread's duties are all PostgreSQL's but the
seeding, so a process that cannot reach Redis still writes what it holds and answers rebuilds.
"""

from __future__ import annotations

import logging
import threading
import time

from timo_hub.platform.db import Database
from timo_hub.quota.ledger import UsageLedger
from timo_hub.quota.rebuild import CounterRebuilder, latest_request

logger = logging.getLogger(__name__)

CYCLE_SECONDS = 0.25
HEARTBEAT_SECONDS = 1.0


class QuotaSync:
    """The background thread of one web process's quota bookkeeping."""

    def __init__(
        self,
        ledger: UsageLedger,
        rebuilder: CounterRebuilder,
        database: Database,
        wake: threading.Event,
    ) -> None:
        self.ledger = ledger
        self.rebuilder = rebuilder
        self._database = database
        self._wake = wake
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_at = 0.0

    def start(self) -> None:
        """Start the thread (in the process that will admit calls)."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quota-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, write what is left and leave the writer registry."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            self.rebuilder.abandon_all()
        except Exception as exc:
            logger.warning("quota sync: could not let go of rebuild fences: %s", exc)
        try:
            self.ledger.deregister()
        except Exception as exc:
            logger.warning("quota ledger: final write failed: %s", exc)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(CYCLE_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.cycle()
            except Exception as exc:
                logger.warning("quota sync: cycle failed, will retry: %s", exc)

    def cycle(self) -> None:
        """One round of the thread's work (also callable directly, by tests)."""
        with self._database.connection() as conn:
            self.rebuilder.issue_requests(conn)
            wanted = latest_request(conn)
        now = time.monotonic()
        if wanted > self.ledger.synced_through and self.ledger.certify(wanted):
            self._beat_at = now
        elif self.ledger.holds_anything() or now - self._beat_at >= HEARTBEAT_SECONDS:
            self.ledger.write(synced_through=None)
            self._beat_at = now
        self.rebuilder.finish_ready()
