"""Quota enforcement for one call: admit and count it, or refuse it, and keep the ledger behind.

`QuotaEnforcer.admit()` is the one call the request path makes: a Redis round trip (plus a ledger
tally in memory). Only a missing counter costs more: a PostgreSQL read to rebuild it. The moment
passed in decides the month, so the caller's one clock decides both the quota period and the
event's `occurred_at`.
"""

from __future__ import annotations

from timo_hub.accounts.principal import Principal
from timo_hub.errors import LimitReachedError
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admission, Admitter
from timo_hub.quota.ledger import UsageLedger
from timo_hub.quota.period import PeriodClock


class QuotaExceededError(LimitReachedError):
    """The account has used its plan's calls for this month."""


class QuotaEnforcer:
    """Admission against the monthly quota, with the durable ledger behind it."""

    def __init__(self, runtime: Runtime) -> None:
        self.admitter = Admitter(runtime.redis)
        self.ledger = UsageLedger(runtime.database)
        self._clock = PeriodClock()

    def admit(self, principal: Principal, now: float, *, count: bool = True) -> Admission:
        """Count one call of `principal` at epoch second `now` if its plan allows it.

        `count=False` only looks (a suspended account's call is refused but still shown its
        month's usage).
        """
        period = self._clock.current(now)
        admission = self.admitter.admit(
            principal.account_id,
            principal.monthly_limit,
            period,
            lambda: self.ledger.used(principal.account_id, period.first_day),
            count=count,
        )
        if admission.admitted:
            self.ledger.record(principal.account_id, period.first_day)
        return admission

    def close(self) -> None:
        """Write what the ledger still holds."""
        self.ledger.close()


def quota_exceeded(admission: Admission, now: float) -> QuotaExceededError:
    """The error that refuses a call the quota did not admit."""
    period = admission.period
    reset = period.end.isoformat().replace("+00:00", "Z")
    return QuotaExceededError(
        f"This account has used its {admission.limit:,} calls for the month; the quota resets "
        f"at {reset}.",
        retry_after=period.seconds_until_reset(now),
        limit=admission.limit,
        used=admission.used,
        reset=period.reset_epoch,
    )
