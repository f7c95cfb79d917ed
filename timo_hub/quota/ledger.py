"""The durable monthly count: admissions written behind to PostgreSQL's `quota_usage`.

Redis holds the counter that enforces the quota; this ledger is what a lost counter is rebuilt
from. Writing PostgreSQL on every request would cost the hot path a round trip, so each web
process adds its admissions to an in-memory tally that its sync thread (`timo_hub.quota.sync`)
folds into `quota_usage` a fraction of a second later. Three properties make the ledger exact:

* It is only ever added to, by the processes that admitted the calls: nothing copies a Redis value
  into it (a copy would count a tally twice once the process holding it writes it).
* Each batch has a sequence number recorded with it (`quota_writers.flushed_seq`), so a batch
  retried after an ambiguous failure (committed, but the acknowledgement was lost) is not added
  twice.
* A rebuild can ask for everything a process holds (`certify`): the process waits until the calls
  it is admitting right now have their answers (their tallies are then recorded), then writes.

A refund (an admitted call answered 5xx) is a negative tally, and its Redis side runs only once
the batch carrying it has committed (`refund(..., then=...)`): the counter is never below the
ledger, so a reconcile in between cannot mistake the refund for a counter behind.

Beside the month, the ledger tallies the calls of each burst window (`quota_window_usage`, keyed
by the window's start on Redis's clock) in the same batches: what a rebuilt counter's current
window is seeded with (`timo_hub.quota.rebuild`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import psycopg

from timo_hub.platform.db import Database
from timo_hub.platform.months import next_month
from timo_hub.quota.counting import counted_calls

logger = logging.getLogger(__name__)

# Leased calls (`timo_hub.quota.leases`) are admitted only while the last write to PostgreSQL
# began less than this long ago: well inside `rebuild.WRITER_LIVENESS_SECONDS`, so a process that
# rebuilds and reconcile take for dead stopped using its leases before. Writes happen at least
# every `sync.HEARTBEAT_SECONDS`.
FRESH_SECONDS = 2.0

# How long a certification waits for calls in flight (each is bounded by the Redis socket
# timeout); past it the sync thread tries again on its next cycle.
QUIESCE_SECONDS = 0.5

# The claim moves this writer's sequence forward only once per batch; the tally is added only if
# it did. Rows for accounts deleted meanwhile are dropped by the join instead of failing the batch.
# Refunds (negative changes) are an UPDATE of the row their admissions added to: as an INSERT's
# proposed row they would fail `used >= 0` before ON CONFLICT is considered.
ADD_USAGE = """
WITH claim AS (
    INSERT INTO quota_writers (writer_id, host, pid, flushed_seq)
    VALUES (%(writer)s, %(host)s, %(pid)s, %(seq)s)
    ON CONFLICT (writer_id) DO UPDATE SET flushed_seq = EXCLUDED.flushed_seq, seen_at = now()
    WHERE quota_writers.flushed_seq < EXCLUDED.flushed_seq
    RETURNING 1
),
change AS (
    SELECT u.account_id, u.period, u.used
    FROM unnest(%(accounts)s::uuid[], %(periods)s::date[], %(counts)s::bigint[])
         AS u (account_id, period, used)
    JOIN accounts a ON a.id = u.account_id
    WHERE EXISTS (SELECT 1 FROM claim)
),
lowered AS (
    UPDATE quota_usage q SET used = greatest(q.used + c.used, 0), updated_at = now()
    FROM change c
    WHERE c.used < 0 AND q.account_id = c.account_id AND q.period = c.period
)
INSERT INTO quota_usage (account_id, period, used)
SELECT account_id, period, used FROM change WHERE used > 0
ON CONFLICT (account_id, period)
DO UPDATE SET used = quota_usage.used + EXCLUDED.used, updated_at = now()
"""
# The same batch's calls per burst window, added after the month's (only if the claim moved).
ADD_WINDOW_USAGE = """
window_change AS (
    SELECT w.account_id, to_timestamp(w.start) AS window_start, w.used
    FROM unnest(%(w_accounts)s::uuid[], %(w_starts)s::bigint[], %(w_counts)s::bigint[])
         AS w (account_id, start, used)
    JOIN accounts a ON a.id = w.account_id
    WHERE EXISTS (SELECT 1 FROM claim)
),
window_lowered AS (
    UPDATE quota_window_usage q SET used = greatest(q.used + c.used, 0)
    FROM window_change c
    WHERE c.used < 0 AND q.account_id = c.account_id AND q.window_start = c.window_start
),
window_added AS (
    INSERT INTO quota_window_usage (account_id, window_start, used)
    SELECT account_id, window_start, used FROM window_change WHERE used > 0
    ON CONFLICT (account_id, window_start)
    DO UPDATE SET used = quota_window_usage.used + EXCLUDED.used
)
"""
ADD_USAGE_AND_WINDOWS = ADD_USAGE.replace(
    "\nlowered AS (", ADD_WINDOW_USAGE.rstrip("\n") + ",\nlowered AS (", 1
)
SELECT_WINDOWS = """
SELECT extract(epoch FROM window_start)::bigint, used FROM quota_window_usage
WHERE account_id = %(account)s AND window_start >= now() - interval '1 hour'
"""
PRUNE_WINDOWS = "DELETE FROM quota_window_usage WHERE window_start < now() - interval '1 hour'"
HEARTBEAT = """
INSERT INTO quota_writers (writer_id, host, pid, synced_through)
VALUES (%(writer)s, %(host)s, %(pid)s, %(synced)s)
ON CONFLICT (writer_id) DO UPDATE
SET seen_at = now(),
    synced_through = greatest(quota_writers.synced_through, EXCLUDED.synced_through)
"""
DEREGISTER = "DELETE FROM quota_writers WHERE writer_id = %(writer)s"
SELECT_USED = "SELECT used FROM quota_usage WHERE account_id = %(account)s AND period = %(period)s"
SELECT_PERIOD = "SELECT account_id, used FROM quota_usage WHERE period = %(period)s"
# A month's first seed records that the month has begun for the account (see `rebuild`).
CLAIM_PERIOD = """
INSERT INTO quota_usage (account_id, period, used) VALUES (%(account)s, %(period)s, 0)
ON CONFLICT (account_id, period) DO NOTHING
RETURNING 1
"""


def durable_used(conn: psycopg.Connection, account_id: uuid.UUID, period: date) -> int:
    """The ledger's count for an account's month (0 when it has none)."""
    row = conn.execute(SELECT_USED, {"account": account_id, "period": period}).fetchone()
    return int(row[0]) if row else 0


def window_usage(conn: psycopg.Connection, account_id: uuid.UUID) -> dict[int, int]:
    """The ledger's calls per burst window of the account's last hour, by the window's start
    (epoch seconds, Redis's clock)."""
    rows = conn.execute(SELECT_WINDOWS, {"account": account_id})
    return {int(start): int(used) for start, used in rows}


def prune_window_usage(conn: psycopg.Connection) -> int:
    """Delete the tallies of burst windows over for an hour (no rebuild needs them); how many."""
    return conn.execute(PRUNE_WINDOWS).rowcount


def period_usage(conn: psycopg.Connection, period: date) -> dict[uuid.UUID, int]:
    """Every account's ledger count for a month."""
    return {row[0]: int(row[1]) for row in conn.execute(SELECT_PERIOD, {"period": period})}


def claim_period(conn: psycopg.Connection, account_id: uuid.UUID, period: date) -> bool:
    """Create the account's ledger row for the month; True if it did not exist before."""
    row = conn.execute(CLAIM_PERIOD, {"account": account_id, "period": period}).fetchone()
    return row is not None


@dataclass
class _Batch:
    """Tallies taken from the pending ones to be written in one statement, and what to do once
    they are committed."""

    seq: int
    counts: Counter[tuple[uuid.UUID, date]]
    then: list[Callable[[], None]] = field(default_factory=list)
    windows: Counter[tuple[uuid.UUID, int]] = field(default_factory=Counter)
    """Calls per (account, burst window start)."""


class UsageLedger:
    """One process's tally of admissions not yet in PostgreSQL, and the means to write it."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self.writer_id = uuid.uuid4()
        self._host = socket.gethostname()
        self._pid = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: Counter[tuple[uuid.UUID, date]] = Counter()
        self._pending_windows: Counter[tuple[uuid.UUID, int]] = Counter()
        self._pending_then: list[Callable[[], None]] = []
        # Batches taken from `_pending` whose commit is not known to have happened, oldest first.
        self._unwritten: list[_Batch] = []
        self._seq = 0
        # Calls between `begin` and `end`, by the parity of the epoch they began in.
        self._epoch = 0
        self._in_flight = [0, 0]
        self._draining: int | None = None
        self.synced_through = 0
        self._fresh_until = -float("inf")

    def restart(self, pid: int) -> None:
        """Start afresh in a forked child: the parent's tally and identity are the parent's."""
        with self._lock:
            self._pending = Counter()
            self._pending_windows = Counter()
            self._pending_then = []
            self._unwritten = []
            self._in_flight = [0, 0]
            self._draining = None
            self._seq = 0
            self.synced_through = 0
            self._fresh_until = -float("inf")
            self.writer_id = uuid.uuid4()
            self._pid = pid

    def begin(self) -> int:
        """Mark a call as in flight (about to ask Redis); returns the token for `end`."""
        with self._lock:
            epoch = self._epoch
            self._in_flight[epoch & 1] += 1
        return epoch

    def end(
        self,
        epoch: int,
        admitted: tuple[uuid.UUID, date] | None,
        window: tuple[uuid.UUID, int] | None = None,
    ) -> None:
        """The call has its answer; tally it if it was admitted (account, month), and in its
        burst window (account, window start) when it has one."""
        with self._lock:
            self._in_flight[epoch & 1] -= 1
            if admitted is not None:
                self._pending[admitted] += 1
                if window is not None:
                    self._pending_windows[window] += 1

    def tally_leased(
        self,
        admitted: tuple[uuid.UUID, date],
        epoch: int,
        now: float,
        window: tuple[uuid.UUID, int] | None = None,
    ) -> bool:
        """Tally a call admitted from a lease granted in `epoch` (and in its burst window), if
        that lease is still good: no rebuild began since, and the tally is being written (see
        `FRESH_SECONDS`)."""
        with self._lock:
            if epoch != self._epoch or now >= self._fresh_until:
                return False
            self._pending[admitted] += 1
            if window is not None:
                self._pending_windows[window] += 1
            return True

    def epoch_is(self, epoch: int) -> bool:
        """Whether no rebuild's certification began since `epoch` (leases of it are good)."""
        return self._epoch == epoch

    def is_fresh(self, now: float) -> bool:
        """Whether leased calls may be admitted: a write to PostgreSQL began recently."""
        return now < self._fresh_until

    def refund(
        self,
        account_id: uuid.UUID,
        period: date,
        then: Callable[[], None],
        window: tuple[uuid.UUID, int] | None = None,
    ) -> None:
        """Take one admission of the account's month (and burst window) back out of the tally,
        and call `then` once that is committed (or at once if the admission was never
        written)."""
        with self._lock:
            self._pending[(account_id, period)] -= 1
            if window is not None:
                self._pending_windows[window] -= 1
            self._pending_then.append(then)

    def pending(self, account_id: uuid.UUID, period: date) -> int:
        """Admissions of this process not yet written."""
        with self._lock:
            held = self._pending.get((account_id, period), 0)
            return held + sum(b.counts.get((account_id, period), 0) for b in self._unwritten)

    def holds_anything(self) -> bool:
        """Whether a write would have something to add."""
        with self._lock:
            return bool(
                self._pending or self._pending_windows or self._pending_then or self._unwritten
            )

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

    def register(self) -> None:
        """Tell rebuilds this process exists (before it admits anything)."""
        self.write(synced_through=None)

    def deregister(self) -> None:
        """Write what is held and leave the registry (clean exit)."""
        self.write(synced_through=None)
        with self._database.connection() as conn:
            conn.execute(DEREGISTER, {"writer": self.writer_id})

    def flush(self) -> None:
        """Write the tally now."""
        self.write(synced_through=None)

    def certify(self, request: int) -> bool:
        """Answer rebuild request `request`: write every admission made before it; True if done.

        Calls still waiting for Redis's answer may have been counted there already, so the
        tally is taken only once every call that was in flight when the request was seen has
        its answer (calls beginning later belong to the next epoch and need not be waited for:
        the rebuilt account's counter is missing, so none of them can be admitted for it).
        """
        if not self._quiesce():
            return False
        self.write(synced_through=request)
        return True

    def write(self, synced_through: int | None) -> None:
        """Write the tally (which beats) or else a heartbeat now; a failed batch is retried as
        it was."""
        with self._write_lock:
            began = time.monotonic()
            with self._lock:
                if self._pending or self._pending_windows or self._pending_then:
                    self._seq += 1
                    self._unwritten.append(
                        _Batch(self._seq, self._pending, self._pending_then, self._pending_windows)
                    )
                    self._pending, self._pending_then = Counter(), []
                    self._pending_windows = Counter()
                batches = list(self._unwritten)
            identity = {"writer": self.writer_id, "host": self._host, "pid": self._pid}
            refused: set[int] = set()
            with self._database.connection() as conn:
                for batch in batches:
                    try:
                        with conn.transaction():  # its own: one bad batch blocks no other
                            self._add(conn, identity, batch)
                    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
                        refused.add(batch.seq)
                        logger.error("quota ledger: batch %d refused, dropped: %s", batch.seq, exc)
                if synced_through is not None or len(refused) == len(batches):
                    # A batch's claim refreshes `seen_at` already; one statement less per cycle.
                    conn.execute(HEARTBEAT, {**identity, "synced": synced_through or 0})
            with self._lock:
                del self._unwritten[: len(batches)]
                self._fresh_until = began + FRESH_SECONDS
                if synced_through is not None:
                    self.synced_through = max(self.synced_through, synced_through)
        for batch in batches:
            if batch.seq in refused:
                continue  # its refunds never reached the ledger: Redis keeps them (the safe side)
            for step in batch.then:
                try:
                    step()
                except Exception as exc:
                    logger.warning("quota ledger: a step after batch %d failed: %s", batch.seq, exc)

    @staticmethod
    def _add(conn: psycopg.Connection, identity: dict[str, object], batch: _Batch) -> None:
        # In key order: two batches updating the same rows lock them in the same order.
        changes = sorted((a, p, n) for (a, p), n in batch.counts.items() if n != 0)
        params: dict[str, object] = {
            **identity,
            "seq": batch.seq,
            "accounts": [a for a, _, _ in changes],
            "periods": [p for _, p, _ in changes],
            "counts": [n for _, _, n in changes],
        }
        windows = sorted((a, w, n) for (a, w), n in batch.windows.items() if n != 0)
        if not windows:
            conn.execute(ADD_USAGE, params)
            return
        params["w_accounts"] = [a for a, _, _ in windows]
        params["w_starts"] = [w for _, w, _ in windows]
        params["w_counts"] = [n for _, _, n in windows]
        conn.execute(ADD_USAGE_AND_WINDOWS, params)

    def _quiesce(self) -> bool:
        with self._lock:
            if self._draining is None:
                self._draining = self._epoch
                self._epoch += 1
            draining = self._draining
        deadline = time.monotonic() + QUIESCE_SECONDS
        while True:
            with self._lock:
                if self._in_flight[draining & 1] == 0:
                    self._draining = None
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
