"""Rebuilding a missing counter to the true count of admitted calls, across every web process.

Only the caller holding the account's fence (`admission.State.REBUILD`) starts a rebuild, so two
processes never seed one counter. The true count is the ledger plus what each live web process
still holds in memory, so a rebuild is a barrier:

1. A month the account has never been seeded in has no admissions anywhere: its ledger row does
   not exist yet (`ledger.claim_period` creates it before the first seed, and every admission
   needs a seeded counter). Such a counter is seeded at once, from the event log only (which is
   empty unless the ledger row was lost, e.g. restored from an old backup).
2. Otherwise the rebuild takes a request number from PostgreSQL (`quota_sync_seq`). Every web
   process's sync thread reads the sequence each cycle (from PostgreSQL, so a process cut off from
   Redis still answers: it cannot admit anything meanwhile, but it may hold a tally), waits for
   the calls it has in flight, writes its whole tally and records the number
   (`quota_writers.synced_through`).
   Once no live writer is behind the number, the ledger holds every admission made before the
   counter went missing (none can be made after: every admission needs the counter), and the
   counter is seeded with the larger of the ledger and the event log's count, and its burst
   window with the ledger's calls for the window current in Redis then (for the same reason, the
   ledger's window tallies then hold every call the window admitted).

Each fence taken starts a new rebuild with a new request (an earlier one's barrier says nothing
about admissions made since), and a rebuild that cannot finish lets go of its fence at once, so
the account's next call starts again rather than waiting for the fence to expire.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg

from timo_hub.platform.db import Database
from timo_hub.platform.months import next_month
from timo_hub.quota import metrics
from timo_hub.quota.admission import FENCE_MILLISECONDS, Admitter
from timo_hub.quota.counting import counted_calls
from timo_hub.quota.ledger import claim_period, durable_used, window_usage
from timo_hub.quota.period import Period

logger = logging.getLogger(__name__)

# A writer silent for this long is taken for dead: rebuilds stop waiting for it. Writers beat
# every second (`timo_hub.quota.sync`), so only a stopped or killed process stays silent this long.
WRITER_LIVENESS_SECONDS = 5.0

NEXT_REQUEST = "SELECT nextval('quota_sync_seq')"
# Sequences are not transactional: the latest `nextval` of any session is visible at once.
LATEST_REQUEST = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM quota_sync_seq"
WRITERS_BEHIND = """
SELECT count(*) FROM quota_writers
WHERE synced_through < %(request)s AND seen_at > now() - make_interval(secs => %(live)s)
"""


def latest_request(conn: psycopg.Connection) -> int:
    """The highest rebuild request issued (0 when none was)."""
    row = conn.execute(LATEST_REQUEST).fetchone()
    return 0 if row is None else int(row[0])


@dataclass
class _Job:
    account_id: uuid.UUID
    period: Period
    give_up_at: float
    window_seconds: int = 0
    """The burst window's length (0: the account has no burst limit)."""
    request: int | None = None


class CounterRebuilder:
    """Rebuilds the counters whose fence this process holds."""

    def __init__(self, admitter: Admitter, database: Database, wake: threading.Event) -> None:
        self._admitter = admitter
        self._database = database
        self._wake = wake
        self._jobs: dict[tuple[uuid.UUID, str], _Job] = {}
        self._lock = threading.Lock()
        self.rebuilt = 0
        """Counters this process has seeded (for tests and logs)."""

    def start(
        self, account_id: uuid.UUID, period: Period, fenced_at: float, window_seconds: int = 0
    ) -> bool:
        """Begin rebuilding a counter whose fence we took at monotonic `fenced_at` (and its burst
        window of `window_seconds`; 0: none); True if it is seeded already. If this raises, the
        caller lets go of the fence."""
        with self._database.connection() as conn:
            fresh = claim_period(conn, account_id, period.first_day)
            logged = counted_calls(conn, period.first_day, next_month(period.first_day), account_id)
        if fresh:
            self._seed(account_id, period, logged.get(account_id, 0), "new month")
            return True
        # Stop a little before the fence expires, so a late seed never follows another's.
        give_up_at = fenced_at + FENCE_MILLISECONDS / 1000 - 2.0
        with self._lock:
            # A new fence, a new barrier: one left from an earlier fence was passed by writers
            # before the admissions made since it (under a counter seeded since) were tallied.
            self._jobs[(account_id, period.label)] = _Job(
                account_id, period, give_up_at, window_seconds
            )
        self._wake.set()
        return False

    def issue_requests(self, conn: psycopg.Connection) -> None:
        """Give new rebuilds a request number (sync thread)."""
        with self._lock:
            new = [job for job in self._jobs.values() if job.request is None]
        if not new:
            return
        row = conn.execute(NEXT_REQUEST).fetchone()
        assert row is not None
        for job in new:
            job.request = int(row[0])

    def finish_ready(self) -> None:
        """Seed every counter whose barrier every live writer has passed (sync thread)."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if job.request is not None]
        for job in jobs:
            key = (job.account_id, job.period.label)
            if time.monotonic() > job.give_up_at:
                logger.warning(
                    "quota: gave up rebuilding %s %s; web processes did not answer in time",
                    job.account_id,
                    job.period.label,
                )
                self._abandon(job)
                continue
            with self._database.connection() as conn:
                row = conn.execute(
                    WRITERS_BEHIND, {"request": job.request, "live": WRITER_LIVENESS_SECONDS}
                ).fetchone()
                if row is None or int(row[0]) > 0:
                    continue
                first, end = job.period.first_day, next_month(job.period.first_day)
                stored = durable_used(conn, job.account_id, first)
                logged = counted_calls(conn, first, end, job.account_id).get(job.account_id, 0)
                windows = window_usage(conn, job.account_id) if job.window_seconds else {}
            seconds = job.window_seconds
            by_number = {w // seconds: n for w, n in windows.items() if w % seconds == 0}
            self._seed(
                job.account_id, job.period, max(stored, logged), "rebuilt", seconds, by_number
            )
            self._drop(key, job)

    def abandon_all(self) -> None:
        """Let go of every rebuild under way here (the process is stopping)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._abandon(job)

    def _abandon(self, job: _Job) -> None:
        # The fence is this process's token, not the job's: a newer rebuild of the same counter
        # holds it now if this job was replaced.
        if self._drop((job.account_id, job.period.label), job):
            self._admitter.release_fence(job.account_id, job.period)

    def _drop(self, key: tuple[uuid.UUID, str], job: _Job) -> bool:
        with self._lock:
            if self._jobs.get(key) is not job:  # replaced by a newer rebuild of the counter
                return False
            del self._jobs[key]
            return True

    def _seed(
        self,
        account_id: uuid.UUID,
        period: Period,
        used: int,
        why: str,
        window_seconds: int = 0,
        windows: dict[int, int] | None = None,
    ) -> None:
        if self._admitter.seed(account_id, period, used, window_seconds, windows):
            self.rebuilt += 1
            metrics.COUNTERS_REBUILT.inc()
            logger.info(
                "quota: counter %s %s seeded at %d (%s)", account_id, period.label, used, why
            )
