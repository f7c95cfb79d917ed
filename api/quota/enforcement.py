"""Quota enforcement for a request: admit or refuse, and the rate-limit headers.

`Quota.admit()` is the one call the request path makes: a Redis round trip (plus a ledger tally
in memory). Only a missing counter costs more: a PostgreSQL read to rebuild it.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g

from api.problems import ApiError
from timo_hub.accounts.cache import Principal
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admission, Admitter
from timo_hub.quota.ledger import UsageLedger
from timo_hub.quota.period import PeriodClock

EXTENSION = "timo_quota"
UNLIMITED = "unlimited"


class QuotaExceededError(ApiError):
    """The account has used its plan's calls for this month."""

    status, slug, title = 429, "quota-exceeded", "Quota Exceeded"


class Quota:
    """Admission against the monthly quota, with the durable ledger behind it."""

    def __init__(self, runtime: Runtime) -> None:
        self.admitter = Admitter(runtime.redis)
        self.ledger = UsageLedger(runtime.database)
        self._clock = PeriodClock()

    def admit(self, principal: Principal, *, count: bool = True) -> Admission:
        """Count one call of `principal` if its plan allows; `count=False` only looks."""
        period = self._clock.current(time.time())
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


def refuse(admission: Admission) -> QuotaExceededError:
    """The 429 for a refused admission."""
    period = admission.period
    retry_after = period.seconds_until_reset(time.time())
    return QuotaExceededError(
        f"This account has used its {admission.limit:,} calls for the month; the quota resets "
        f"at {period.end.isoformat().replace('+00:00', 'Z')}.",
        headers={"Retry-After": str(retry_after)},
        limit=admission.limit,
        used=admission.used,
        reset=period.reset_epoch,
    )


def add_rate_limit_headers(response: Response) -> Response:
    """`after_request`: the month's limit, what remains and when it resets, if known."""
    admission: Admission | None = g.get("admission")
    if admission is None:
        return response
    headers = response.headers
    if admission.limit is None:
        # Unlimited plans: explicit words instead of a number a client could mistake for a limit.
        headers["X-RateLimit-Limit"] = UNLIMITED
        headers["X-RateLimit-Remaining"] = UNLIMITED
    else:
        headers["X-RateLimit-Limit"] = str(admission.limit)
        headers["X-RateLimit-Remaining"] = str(admission.remaining)
    headers["X-RateLimit-Reset"] = str(admission.period.reset_epoch)
    return response


def init_app(app: Flask, runtime: Runtime) -> Quota:
    """Attach a quota enforcer to `app`."""
    quota = Quota(runtime)
    app.extensions[EXTENSION] = quota
    return quota
