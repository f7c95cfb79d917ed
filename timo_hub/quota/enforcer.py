"""Quota enforcement for one call: admit and count it, or refuse it, and keep the ledger behind.

`QuotaEnforcer.admit()` is the one call the request path makes: a Redis round trip (plus a ledger
tally in memory), or for a busy account no round trip at all, the call being taken from a lease of
calls this process had counted ahead (`timo_hub.quota.leases`). Only a missing counter costs
more: the call waits (briefly; past `REBUILD_WAIT_SECONDS` it is answered 503 and counts nothing)
while the counter is rebuilt. The moment passed in decides the month, so the caller's one clock
decides both the quota period and the event's `occurred_at`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid

import redis

from timo_hub.accounts.principal import Principal
from timo_hub.errors import LimitReachedError, UnavailableError
from timo_hub.platform.runtime import Runtime
from timo_hub.quota import metrics
from timo_hub.quota.admission import Admission, Admitter, State, counter_keys
from timo_hub.quota.leases import LeaseBook
from timo_hub.quota.ledger import UsageLedger
from timo_hub.quota.period import Period, PeriodClock
from timo_hub.quota.rebuild import CounterRebuilder
from timo_hub.quota.sync import QuotaSync

logger = logging.getLogger(__name__)

# How long a call waits for its account's counter to be rebuilt before it is answered 503.
REBUILD_WAIT_SECONDS = 2.0
REBUILD_POLL_SECONDS = 0.02


class QuotaExceededError(LimitReachedError):
    """The account has used its plan's calls for this month."""


class QuotaUnavailableError(UnavailableError):
    """The call could not be admitted or refused for certain; nothing was counted."""


class QuotaEnforcer:
    """Admission against the monthly quota, with the durable ledger behind it."""

    def __init__(self, runtime: Runtime) -> None:
        self._fence_token = uuid.uuid4().hex
        self.admitter = Admitter(runtime.redis, self._fence_token)
        self.ledger = UsageLedger(runtime.database)
        self.leases = LeaseBook(self.ledger, self.admitter)
        wake = threading.Event()
        self.rebuilder = CounterRebuilder(self.admitter, runtime.database, wake)
        self.sync = QuotaSync(self.ledger, self.rebuilder, runtime.database, wake)
        self._clock = PeriodClock()
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def admit(self, principal: Principal, now: float, *, count: bool = True) -> Admission:
        """Count one call of `principal` at epoch second `now` if its plan allows it.

        `count=False` only looks (a suspended account's call is refused but still shown its
        month's usage).
        """
        return self._admit(principal.account_id, principal.monthly_limit, now, count)

    def look(self, account_id: uuid.UUID, limit: int | None, now: float) -> Admission:
        """The account's usage this month at epoch second `now`, counting nothing (the
        dashboard's gauge: viewing it is not a call). `admitted` is False: nothing was."""
        return self._admit(account_id, limit, now, count=False)

    def _admit(
        self, account_id: uuid.UUID, limit: int | None, now: float, count: bool
    ) -> Admission:
        if self._pid != os.getpid():
            self._start()
        period = self._clock.current(now)
        wanted = 0
        if count:
            moment = time.monotonic()
            leased = self.leases.take(account_id, limit, period, moment)
            if leased is not None:
                return leased
            wanted = self.leases.wanted(account_id, period, moment)
        give_up_at: float | None = None
        while True:
            lease = self.leases.new_name() if wanted > 1 else "-"
            epoch = self.ledger.begin()
            outcome = None
            try:
                outcome = self.admitter.admit(
                    account_id, limit, period, count=count, wanted=wanted, lease=lease
                )
            finally:
                admitted = outcome is not None and outcome.state is State.ADMITTED
                self.ledger.end(epoch, (account_id, period.first_day) if admitted else None)
            state = outcome.state
            if state is State.ADMITTED:
                if outcome.granted > 1:
                    self.leases.install(
                        account_id, limit, period, outcome, lease, epoch, time.monotonic()
                    )
                used = outcome.used - outcome.granted + 1
                return Admission(True, used, limit, period, outcome.at, outcome.run_id)
            if state is State.REFUSED:
                parked = count and outcome.granted > 0  # leases on record
                return Admission(False, outcome.used, limit, period, calls_parked=parked)
            if state is State.UNKNOWN:
                used = self.ledger.used(account_id, period.first_day)
                return Admission(False, used, limit, period)
            if state is State.EXPIRED:
                metrics.ADMISSIONS_EXPIRED.inc()
                raise QuotaUnavailableError(
                    "The quota store answered too late to count this call; nothing was counted. "
                    "Retry shortly.",
                    retry_after=1,
                )
            if state is State.REBUILD and self._start_rebuild(account_id, period):
                continue
            if give_up_at is None:
                give_up_at = time.monotonic() + REBUILD_WAIT_SECONDS
            elif time.monotonic() > give_up_at:
                metrics.REBUILD_WAITS_ABANDONED.inc()
                raise QuotaUnavailableError(
                    "This account's usage counter is being rebuilt; nothing was counted. "
                    "Retry shortly.",
                    retry_after=1,
                )
            time.sleep(REBUILD_POLL_SECONDS)

    def refund(self, principal: Principal, admission: Admission) -> None:
        """Take back an admitted call whose answer does not count (the handler answered 503).

        The ledger's tally goes down by one; the Redis counter that counted the call goes down
        once that is committed (so it is never below the ledger), if it is still in place.
        """
        if not admission.admitted:
            return
        account_id, period = principal.account_id, admission.period
        keys = counter_keys(account_id, period)
        undo = keys.undo()

        def take_back_in_redis() -> None:
            try:
                self.admitter.take_back(keys, admission.run_id, admission.counted_at, undo)
            except redis.RedisError as exc:
                # The counter stays one call high, the safe side, until it is next rebuilt.
                logger.warning("quota: could not refund a call in Redis (%s): %s", account_id, exc)

        self.ledger.refund(account_id, period.first_day, then=take_back_in_redis)
        metrics.CALLS_REFUNDED.inc()

    def _start_rebuild(self, account_id: uuid.UUID, period: Period) -> bool:
        fenced_at = time.monotonic()
        try:
            return self.rebuilder.start(account_id, period, fenced_at)
        except BaseException:
            # Nobody else may rebuild while we hold the fence: give it back before failing.
            with contextlib.suppress(Exception):
                self.admitter.release_fence(account_id, period)
            raise

    def close(self) -> None:
        """Stop the sync thread, return unused leased calls and write what the ledger holds."""
        if self._pid == os.getpid():
            try:
                self.leases.stop()
            except Exception as exc:
                logger.warning("quota: could not end leases (reconcile will): %s", exc)
            self.sync.stop()
            self._pid = None

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # Whatever was inherited through fork() is the parent's to write, not ours.
            self.ledger.restart(os.getpid())
            self.leases.restart()
            # Before the first admission, so that a rebuild knows to wait for us; if PostgreSQL is
            # down the sync thread registers us on its first cycle instead.
            with contextlib.suppress(Exception):
                self.ledger.register()
            self.sync.start()
            self.leases.start()
            self._pid = os.getpid()
            atexit.register(self.close)


def quota_exceeded(admission: Admission, now: float) -> QuotaExceededError:
    """The error that refuses a call the quota did not admit."""
    period = admission.period
    reset = period.end.isoformat().replace("+00:00", "Z")
    if admission.calls_parked:
        # Some of the counted calls are leased to web processes and not used yet: those not used
        # go back within a second, so say to retry then, not when the month ends.
        return QuotaExceededError(
            f"This account has used or reserved its {admission.limit:,} calls for the month; "
            "reserved calls not used are returned within a second. Retry shortly.",
            retry_after=1,
            limit=admission.limit,
            used=admission.used,
            reset=period.reset_epoch,
        )
    return QuotaExceededError(
        f"This account has used its {admission.limit:,} calls for the month; the quota resets "
        f"at {reset}.",
        retry_after=period.seconds_until_reset(now),
        limit=admission.limit,
        used=admission.used,
        reset=period.reset_epoch,
    )
