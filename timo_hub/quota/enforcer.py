"""Quota enforcement for one call: admit and count it in every window, or refuse it, and keep the
ledger behind.

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
import random
import threading
import time
import uuid

import redis

from timo_hub.accounts.principal import Principal
from timo_hub.errors import LimitReachedError, UnavailableError
from timo_hub.platform.runtime import Runtime
from timo_hub.quota import metrics
from timo_hub.quota.admission import (
    BURST_POLICY,
    MONTH_POLICY,
    Admission,
    Admitter,
    BurstWindow,
    Outcome,
    State,
    counter_keys,
    window_name,
)
from timo_hub.quota.leases import LeaseBook
from timo_hub.quota.ledger import UsageLedger
from timo_hub.quota.period import Period, PeriodClock
from timo_hub.quota.rebuild import CounterRebuilder
from timo_hub.quota.sync import QuotaSync

logger = logging.getLogger(__name__)

# How long a call waits for its account's counter to be rebuilt before it is answered 503.
REBUILD_WAIT_SECONDS = 2.0
REBUILD_POLL_SECONDS = 0.02


# A month's refusal is told to come back at the month's end plus up to this much, drawn at
# random: every client refused in a month would otherwise come back in its first second.
MONTH_END_SPREAD_SECONDS = 60


class QuotaExceededError(LimitReachedError):
    """The account has used its plan's calls for this month."""


class BurstLimitError(LimitReachedError):
    """The account has made its burst window's calls; the next window admits again."""


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
        """Count one call of `principal` at epoch second `now` if every window of its limits
        allows it.

        `count=False` only looks (a suspended account's call is refused but still shown its
        month's usage).
        """
        return self._admit(
            principal.account_id,
            principal.monthly_limit,
            now,
            count,
            principal.burst_limit,
            principal.burst_window_seconds,
        )

    def look(
        self,
        account_id: uuid.UUID,
        limit: int | None,
        now: float,
        burst_limit: int | None = None,
        window_seconds: int = 60,
    ) -> Admission:
        """The account's usage this month and in its burst window at epoch second `now`,
        counting nothing (the dashboard's gauges: viewing them is not a call). `admitted` is
        False: nothing was."""
        return self._admit(account_id, limit, now, False, burst_limit, window_seconds)

    def _admit(
        self,
        account_id: uuid.UUID,
        limit: int | None,
        now: float,
        count: bool,
        burst_limit: int | None,
        window_seconds: int,
    ) -> Admission:
        if self._pid != os.getpid():
            self._start()
        period = self._clock.current(now)
        wanted = 0
        moment = time.monotonic()
        if count:
            leased = self.leases.take(account_id, limit, burst_limit, period, moment)
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
                    account_id,
                    limit,
                    period,
                    count=count,
                    wanted=wanted,
                    lease=lease,
                    burst_limit=burst_limit,
                    window_seconds=window_seconds,
                )
            finally:
                admitted = outcome is not None and outcome.state is State.ADMITTED
                window = None
                if admitted and burst_limit is not None:
                    assert outcome is not None
                    window = (account_id, _window_start(outcome.at, window_seconds))
                self.ledger.end(epoch, (account_id, period.first_day) if admitted else None, window)
            state = outcome.state
            burst = _burst_window(outcome, burst_limit, window_seconds)
            if state is State.ADMITTED:
                if outcome.granted > 1:
                    if burst is not None:  # as the lease's first call sees it: the rest are parked
                        burst = burst._replace(used=burst.used - outcome.granted + 1)
                    self.leases.install(
                        account_id, limit, period, outcome, lease, epoch, moment, burst
                    )
                used = outcome.used - outcome.granted + 1
                return Admission(True, used, limit, period, outcome.at, outcome.run_id, burst=burst)
            if state is State.REFUSED:
                parked = count and outcome.granted > 0  # leases on record
                return Admission(
                    False,
                    outcome.used,
                    limit,
                    period,
                    calls_parked=parked,
                    burst=burst,
                    refused_by=MONTH_POLICY if count else None,
                )
            if state is State.THROTTLED:
                return Admission(
                    False,
                    outcome.used,
                    limit,
                    period,
                    calls_parked=outcome.granted > 0,  # leases on record
                    burst=burst,
                    refused_by=BURST_POLICY,
                )
            if state is State.UNKNOWN:
                used = self.ledger.used(account_id, period.first_day)
                return Admission(False, used, limit, period, burst=burst)
            if state is State.EXPIRED:
                metrics.ADMISSIONS_EXPIRED.inc()
                raise QuotaUnavailableError(
                    "The quota store answered too late to count this call; nothing was counted. "
                    "Retry shortly.",
                    retry_after=1,
                )
            if state is State.REBUILD and self._start_rebuild(
                account_id, period, window_seconds if burst_limit is not None else 0
            ):
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
        """Take back an admitted call whose answer does not count (the server answered 5xx),
        from every window that counted it.

        The ledger's tallies go down by one; the Redis counter and burst window that counted the
        call go down once that is committed (so the counter is never below the ledger), if they
        are still in place (a window that is over has nothing to give back).
        """
        if not admission.admitted:
            return
        account_id, period = principal.account_id, admission.period
        keys = counter_keys(account_id, period)
        undo = keys.undo()
        burst = admission.burst
        window_us = burst.seconds * 1_000_000 if burst is not None else 0
        window = (account_id, burst.number * burst.seconds) if burst is not None else None

        def take_back_in_redis() -> None:
            try:
                self.admitter.take_back(
                    keys, admission.run_id, admission.counted_at, undo, window_us
                )
            except redis.RedisError as exc:
                # The counter stays one call high, the safe side, until it is next rebuilt.
                logger.warning("quota: could not refund a call in Redis (%s): %s", account_id, exc)

        self.ledger.refund(account_id, period.first_day, then=take_back_in_redis, window=window)
        metrics.CALLS_REFUNDED.inc()

    def _start_rebuild(self, account_id: uuid.UUID, period: Period, window_seconds: int) -> bool:
        fenced_at = time.monotonic()
        try:
            return self.rebuilder.start(account_id, period, fenced_at, window_seconds)
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


def _window_start(redis_us: int, window_seconds: int) -> int:
    """The epoch second (Redis's clock) the burst window containing `redis_us` began."""
    return redis_us // (window_seconds * 1_000_000) * window_seconds


def _burst_window(
    outcome: Outcome, burst_limit: int | None, window_seconds: int
) -> BurstWindow | None:
    """The burst window an outcome found (None: the account has no burst limit)."""
    if burst_limit is None:
        return None
    window_us = window_seconds * 1_000_000
    number = outcome.at // window_us
    ends_in = ((number + 1) * window_us - outcome.at) / 1_000_000
    return BurstWindow(burst_limit, outcome.burst_used, window_seconds, number, ends_in)


def refusal(admission: Admission, now: float) -> LimitReachedError:
    """The error that refuses a call a window did not admit: the burst window's, or the
    month's."""
    burst = admission.burst
    if admission.refused_by == BURST_POLICY and burst is not None:
        retry_after = burst.reset_after
        window = window_name(burst.seconds)
        detail = (
            f"This account has made its {burst.limit:,} calls for this {window}; "
            f"the next window opens in {burst.reset_after} s."
        )
        if admission.calls_parked:
            # Calls leased in this window and not used go back within a second.
            retry_after = 1
            detail = (
                f"This account has made or reserved its {burst.limit:,} calls for this "
                f"{window}; reserved calls not used are returned within a second."
            )
        elif burst.reset_epoch >= admission.period.reset_epoch:
            # The month's last window ends at 00:00 UTC with the month: spread its comebacks
            # as the month's own refusals are.
            retry_after += random.randint(0, MONTH_END_SPREAD_SECONDS)
        return BurstLimitError(
            f"{detail} The month's quota is not charged for refused calls.",
            retry_after=retry_after,
            policy=BURST_POLICY,
            limit=burst.limit,
            window_seconds=burst.seconds,
            used=burst.used,
            reset=burst.reset_epoch,
            **{"violated-policies": [BURST_POLICY]},
        )
    return quota_exceeded(admission, now)


def quota_exceeded(admission: Admission, now: float) -> QuotaExceededError:
    """The error that refuses a call the month's quota did not admit."""
    period = admission.period
    reset = period.end.isoformat().replace("+00:00", "Z")
    violated = [MONTH_POLICY]
    burst = admission.burst
    if burst is not None and burst.used >= burst.limit:
        violated.append(BURST_POLICY)
    if admission.calls_parked:
        # Some of the counted calls are leased to web processes and not used yet: those not used
        # go back within a second, so say to retry then, not when the month ends.
        return QuotaExceededError(
            f"This account has used or reserved its {admission.limit:,} calls for the month; "
            "reserved calls not used are returned within a second. Retry shortly.",
            retry_after=1,
            policy=MONTH_POLICY,
            limit=admission.limit,
            used=admission.used,
            reset=period.reset_epoch,
            **{"violated-policies": violated},
        )
    return QuotaExceededError(
        f"This account has used its {admission.limit:,} calls for the month; the quota resets "
        f"at {reset}.",
        retry_after=period.seconds_until_reset(now) + random.randint(0, MONTH_END_SPREAD_SECONDS),
        policy=MONTH_POLICY,
        limit=admission.limit,
        used=admission.used,
        reset=period.reset_epoch,
        **{"violated-policies": violated},
    )
