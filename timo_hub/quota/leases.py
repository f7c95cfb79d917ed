"""Quota leases: a busy account's calls counted in Redis a batch at a time, admitted in-process.

A Redis round trip per call is most of what metering costs (docs/hot-path.md), so a web process
that sees an account called often asks the admission script to count a batch of calls at once (a
lease) and admits the next calls of that account from it, with no round trip. The counter then
holds every call admitted plus the calls leased and not used yet, so it is never below the true
count and the limit is never overrun. What keeps the count exact:

* **Every leased call is tallied like any other** (the ledger, then PostgreSQL), in the same step
  that takes it from the lease, so the ledger knows nothing of leases.
* **A lease is only used while a rebuild could not miss it.** It belongs to the ledger's epoch it
  was granted in; a rebuild's certification starts a new epoch before it writes the tally, so a
  call either took its lease before (and is in the tally written for the rebuild) or finds the
  lease void. A lease is also void once the process has not written to PostgreSQL for
  `UsageLedger.FRESH_SECONDS`: a process that rebuilds and reconcile take for dead (silent for
  `WRITER_LIVENESS_SECONDS`) stopped using its leases long before.
* **The unused part goes back.** A lease lasts `LEASE_SECONDS`; a thread of the process's own
  (Redis only) ends leases that ran out, expired, were voided or whose plan changed, and returns
  each one's unused calls to the counter that counted them (`Admitter.settle`, idempotent: the
  lease is on record in Redis until then).
* **A dead process's leases never take the counter below the truth.** Redis keeps each lease on
  record with the calls its process may not use yet: a lease may be taken for `lease_ahead` calls
  beyond what Redis has on record as used, and the thread moves that mark ahead each cycle,
  before the calls are used. Reconcile returns what is on record once the process is gone from
  the writer registry: never more than was really unused, at most `lease_ahead` fewer.
* **Leases hold back at most a sliver of the month.** The script leases at most
  1/`LEASE_HEADROOM` of what is left, and nothing over the month's last `LEASE_HEADROOM` calls;
  leases are not asked for until an account is called again within a lease's lifetime, and grow
  by doubling while it keeps being called.
* **A lease lives inside one burst window.** Its calls are counted in the window it was granted
  in, by the same rule (at most 1/`LEASE_HEADROOM` of what the window has left, none over its
  last calls: a window of a few hundred calls is counted one call at a time), and it ends when
  that window does, so no window ever admits more than its limit, and leased calls never spill
  into the next window.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date

import redis

from timo_hub.quota import metrics
from timo_hub.quota.admission import (
    Admission,
    Admitter,
    BurstWindow,
    Outcome,
    counter_keys,
    lease_ahead,
)
from timo_hub.quota.ledger import UsageLedger
from timo_hub.quota.period import Period

logger = logging.getLogger(__name__)

# How long a lease may be used. It bounds how long unused calls stay parked in a process, and how
# stale a leased call's rate-limit headers can be.
LEASE_SECONDS = 1.0
LARGEST_LEASE = 1024
# How often this process's lease thread ends leases and records what they have left. It talks to
# Redis only, so a PostgreSQL that hangs (which voids every lease) delays no return.
KEEPER_SECONDS = 0.25

LeaseKey = tuple[uuid.UUID, date]


@dataclass(slots=True)
class Lease:
    """Calls of one account's month counted in Redis ahead of use by this process."""

    name: str
    account_id: uuid.UUID
    period: Period
    limit: int | None
    run_id: str
    counted_at: int
    epoch: int
    granted: int
    first_used: int
    """The month's count the lease's first call was answered with."""
    expires_at: float
    used: int = 1
    """Calls taken from it: the first by the call that asked for it."""
    allowed: int = 0
    """Calls it may be taken for: Redis has the rest on record as unused, which is what a dead
    process's lease is ended with, so that figure is never more than the calls really unused."""
    burst: BurstWindow | None = None
    """The burst window it was counted in, as its first call saw it (None: no burst limit)."""
    window_ends_at: float = float("inf")
    """When that window ends (monotonic, never later than on Redis's clock)."""

    @property
    def window(self) -> int:
        """Its burst window's number (-1: none)."""
        return -1 if self.burst is None else self.burst.number


class LeaseBook:
    """This process's leases: taken from by request threads, ended by a thread of their own."""

    def __init__(self, ledger: UsageLedger, admitter: Admitter) -> None:
        self._ledger = ledger
        self._admitter = admitter
        self._lock = threading.Lock()
        self._active: dict[LeaseKey, Lease] = {}
        self._ended: list[Lease] = []
        # Per account month: the lease size to ask for next, and when Redis last admitted a call.
        self._demand: dict[LeaseKey, tuple[int, float]] = {}
        self._names = itertools.count(1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start this process's lease thread (ends leases, records what they have left)."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quota-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and end every lease, returning their unused calls (at exit)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.end_due(time.monotonic(), every=True)

    def _run(self) -> None:
        while not self._stopping.wait(KEEPER_SECONDS):
            try:
                self.end_due(time.monotonic())
            except Exception as exc:
                logger.warning("quota: lease upkeep failed, will retry: %s", exc)

    def restart(self) -> None:
        """Start afresh in a forked child: the parent's leases are the parent's to end."""
        with self._lock:
            self._active, self._ended, self._demand = {}, [], {}

    def take(
        self,
        account_id: uuid.UUID,
        limit: int | None,
        burst_limit: int | None,
        period: Period,
        now: float,
    ) -> Admission | None:
        """Admit and tally one call from the account's lease, or None (ask Redis)."""
        key = (account_id, period.first_day)
        with self._lock:
            lease = self._active.get(key)
            if lease is None:
                return None
            burst = lease.burst
            if (
                lease.used >= lease.allowed
                or now >= lease.expires_at
                or lease.limit != limit
                or (burst.limit if burst is not None else None) != burst_limit
                or not self._ledger.tally_leased(
                    key,
                    lease.epoch,
                    now,
                    (account_id, burst.number * burst.seconds) if burst is not None else None,
                )
            ):
                del self._active[key]
                self._ended.append(lease)
                return None
            used = lease.first_used + lease.used
            if burst is not None:
                burst = BurstWindow(
                    burst.limit,
                    burst.used + lease.used,
                    burst.seconds,
                    burst.number,
                    lease.window_ends_at - now,
                )
            lease.used += 1
        return Admission(True, used, limit, period, lease.counted_at, lease.run_id, burst=burst)

    def held(self) -> int:
        """Calls counted in Redis and not used yet, over every lease in use here."""
        with self._lock:
            return sum(lease.granted - lease.used for lease in self._active.values())

    def wanted(self, account_id: uuid.UUID, period: Period, now: float) -> int:
        """How many calls to ask Redis for: one, unless the account was admitted here within a
        lease's lifetime (then twice the last lease, up to `LARGEST_LEASE`)."""
        if not self._ledger.is_fresh(now):
            return 1
        key = (account_id, period.first_day)
        with self._lock:
            size, last = self._demand.get(key, (0, -LEASE_SECONDS))
            wanted = min(max(size, 1) * 2, LARGEST_LEASE) if now - last < LEASE_SECONDS else 1
            self._demand[key] = (size, now)
        return wanted

    def new_name(self) -> str:
        """A name for a lease asked for, unique across processes (writer id and a number)."""
        return f"{self._ledger.writer_id}:{next(self._names)}"

    def install(
        self,
        account_id: uuid.UUID,
        limit: int | None,
        period: Period,
        outcome: Outcome,
        name: str,
        epoch: int,
        asked_at: float,
        burst: BurstWindow | None = None,
    ) -> None:
        """Keep the rest of a lease Redis granted (its first call is the asker's), asked for at
        monotonic `asked_at` (before Redis read its clock), in burst window `burst` as the
        lease's first call saw it."""
        key = (account_id, period.first_day)
        now = time.monotonic()
        expires_at = now + LEASE_SECONDS
        window_ends_at = float("inf")
        if burst is not None:
            # From the moment asked: the window ends no later than that on Redis's clock.
            window_ends_at = asked_at + burst.ends_in
            expires_at = min(expires_at, window_ends_at)
        lease = Lease(
            name,
            account_id,
            period,
            limit,
            outcome.run_id,
            outcome.at,
            epoch,
            outcome.granted,
            outcome.used - outcome.granted + 1,
            expires_at,
            allowed=lease_ahead(outcome.granted),
            burst=burst,
            window_ends_at=window_ends_at,
        )
        metrics.LEASES_GRANTED.inc()
        with self._lock:
            self._demand[key] = (outcome.granted, now)
            if not self._ledger.epoch_is(epoch):
                self._ended.append(lease)  # a rebuild began meanwhile: void from the start
                return
            earlier = self._active.get(key)
            if earlier is not None:
                self._ended.append(earlier)
            self._active[key] = lease

    def end_due(self, now: float, *, every: bool = False) -> None:
        """End the leases run out, expired or void (`every`: all of them), return their unused
        calls to Redis, and record how far each lease in use may be taken (the lease thread).
        Leases Redis cannot take now are tried again."""
        fresh = self._ledger.is_fresh(now)
        with self._lock:
            for key, lease in list(self._active.items()):
                if (
                    every
                    or lease.used >= lease.granted
                    or now >= lease.expires_at
                    or not fresh
                    or not self._ledger.epoch_is(lease.epoch)
                ):
                    del self._active[key]
                    self._ended.append(lease)
            ended, self._ended = self._ended, []
            # Each lease in use may be taken for `lease_ahead` more calls than it has been,
            # once Redis has that on record.
            changed = [
                (lease, reach)
                for lease in self._active.values()
                if (reach := min(lease.granted, lease.used + lease_ahead(lease.granted)))
                > lease.allowed
            ]
            for key, (_, last) in list(self._demand.items()):
                if now - last > 2 * LEASE_SECONDS:
                    del self._demand[key]
        failed: list[Lease] = []
        for lease in ended:
            try:
                keys = counter_keys(lease.account_id, lease.period)
                unused = lease.granted - lease.used
                returned = self._admitter.settle(
                    keys, lease.name, lease.run_id, unused, lease.window
                )
            except redis.RedisError as exc:
                logger.warning("quota: could not end a lease (%s), will retry: %s", lease.name, exc)
                failed.append(lease)
                continue
            metrics.LEASED_CALLS_RETURNED.inc(max(returned, 0))
        if failed:
            # Bounded: no lease is granted while Redis cannot be reached.
            with self._lock:
                self._ended[:0] = failed
        if changed:
            self._record(changed)

    def _record(self, changed: list[tuple[Lease, int]]) -> None:
        records = [
            (counter_keys(lease.account_id, lease.period), lease.name, lease.granted - allowed)
            for lease, allowed in changed
        ]
        try:
            self._admitter.record_unused(records)
        except redis.RedisError as exc:
            logger.warning("quota: could not record what leases have left: %s", exc)
            return
        with self._lock:
            for lease, allowed in changed:
                lease.allowed = max(lease.allowed, allowed)
