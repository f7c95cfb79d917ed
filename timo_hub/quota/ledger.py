"""The durable monthly count: admissions written behind to PostgreSQL's `quota_usage`.

Redis holds the counter that enforces the quota; this ledger is what that counter is rebuilt from
if Redis loses it. Writing PostgreSQL on every request would cost the hot path a round trip, so each
web process adds its admissions to an in-memory tally and a background thread folds the tally into
`quota_usage` every `FLUSH_SECONDS` (and on exit), one statement for all accounts. The ledger can
therefore trail Redis by a fraction of a second (more if a web process is killed outright). A
missing counter is rebuilt from the larger of this ledger and the event log's count of admitted
calls (`used()`), and `timo-hub quota reconcile` repairs whatever drift remains.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections import Counter
from datetime import date

import psycopg

from timo_hub.platform.db import Database
from timo_hub.platform.months import next_month
from timo_hub.quota.counting import counted_calls

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25

# Rows for accounts deleted meanwhile are dropped by the join instead of failing the batch.
ADD_USAGE = """
INSERT INTO quota_usage (account_id, period, used)
SELECT u.account_id, u.period, u.used
FROM unnest(%(accounts)s::uuid[], %(periods)s::date[], %(counts)s::bigint[])
     AS u (account_id, period, used)
JOIN accounts a ON a.id = u.account_id
ON CONFLICT (account_id, period)
DO UPDATE SET used = quota_usage.used + EXCLUDED.used, updated_at = now()
"""
SELECT_USED = "SELECT used FROM quota_usage WHERE account_id = %(account)s AND period = %(period)s"
RAISE_USED = """
INSERT INTO quota_usage (account_id, period, used) VALUES (%(account)s, %(period)s, %(used)s)
ON CONFLICT (account_id, period)
DO UPDATE SET used = greatest(quota_usage.used, EXCLUDED.used), updated_at = now()
"""
SELECT_PERIOD = "SELECT account_id, used FROM quota_usage WHERE period = %(period)s"


def durable_used(conn: psycopg.Connection, account_id: uuid.UUID, period: date) -> int:
    """The ledger's count for an account's month (0 when it has none)."""
    row = conn.execute(SELECT_USED, {"account": account_id, "period": period}).fetchone()
    return int(row[0]) if row else 0


def raise_used(conn: psycopg.Connection, account_id: uuid.UUID, period: date, used: int) -> None:
    """Raise the ledger's count to `used` unless it is higher already."""
    conn.execute(RAISE_USED, {"account": account_id, "period": period, "used": used})


def period_usage(conn: psycopg.Connection, period: date) -> dict[uuid.UUID, int]:
    """Every account's ledger count for a month."""
    return {row[0]: int(row[1]) for row in conn.execute(SELECT_PERIOD, {"period": period})}


class UsageLedger:
    """This process's tally of admissions not yet in PostgreSQL, and the thread that writes it."""

    def __init__(self, database: Database, interval: float = FLUSH_SECONDS) -> None:
        self._database = database
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: Counter[tuple[uuid.UUID, date]] = Counter()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, account_id: uuid.UUID, period: date) -> None:
        """Tally one admitted call."""
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._pending[(account_id, period)] += 1

    def pending(self, account_id: uuid.UUID, period: date) -> int:
        """Admissions of this process not yet written."""
        with self._lock:
            return self._pending.get((account_id, period), 0)

    def used(self, account_id: uuid.UUID, period: date) -> int:
        """The best durable count known: the larger of the ledger (plus this process's unwritten
        tally) and the event log's count of admitted calls.

        Each is a lower bound that covers the other's blind spot: the ledger includes calls whose
        events are still in flight (spooled or queued), the log includes calls whose ledger
        tally died with a killed web process.
        """
        end = next_month(period)
        with self._database.connection() as conn:
            stored = durable_used(conn, account_id, period)
            logged = counted_calls(conn, period, end, account_id).get(account_id, 0)
        return max(stored + self.pending(account_id, period), logged)

    def flush(self) -> None:
        """Write the tally now; on failure it is kept for the next attempt."""
        with self._lock:
            batch, self._pending = self._pending, Counter()
        if not batch:
            return
        accounts, periods, counts = zip(*((a, p, n) for (a, p), n in batch.items()), strict=True)
        try:
            with self._database.connection() as conn:
                conn.execute(
                    ADD_USAGE,
                    {"accounts": list(accounts), "periods": list(periods), "counts": list(counts)},
                )
        except Exception:
            with self._lock:
                self._pending.update(batch)
            raise

    def close(self) -> None:
        """Stop the writer and write what is left."""
        self._stop.set()
        # Flushing here rather than joining the writer: batches are swapped under the lock, so
        # a flush racing the writer's last one writes each admission exactly once.
        self._flush_logged()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A tally inherited through fork() is the parent's to write, not ours.
            self._pending = Counter()
            self._pid = os.getpid()
            self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quota-ledger", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            logger.warning("quota ledger: write failed, will retry: %s", exc)
