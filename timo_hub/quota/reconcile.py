"""Compare each account's Redis counter with the durable counts and repair the lower ones.

Redis counts every admission exactly but can lose its data. The ledger survives but trails by the
web processes' unwritten tallies (more if one was killed); the event log survives everything but
trails by the events still in flight. The truth is at least the largest of the three, and repair
raises the others to it: a counter never goes down, so a repair can never hand out quota.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from timo_hub.accounts import store
from timo_hub.platform.runtime import Runtime
from timo_hub.quota.admission import Admitter
from timo_hub.quota.counting import counted_calls
from timo_hub.quota.ledger import period_usage, raise_used
from timo_hub.quota.period import Period


@dataclass(frozen=True)
class Drift:
    """One account's counter against its ledger for a period."""

    account_id: uuid.UUID
    redis: int | None
    ledger: int
    log: int

    @property
    def difference(self) -> int:
        """Redis minus the larger durable count (a missing counter counts as 0)."""
        return (self.redis or 0) - max(self.ledger, self.log)

    @property
    def repaired_to(self) -> int:
        """The value counter and ledger hold after repair."""
        return max(self.redis or 0, self.ledger, self.log)


def compare(runtime: Runtime, period: Period) -> list[Drift]:
    """Every account with usage in `period` on either side, with both counts."""
    with runtime.database.connection() as conn:
        ledger = period_usage(conn, period.first_day)
        logged = counted_calls(conn, period.first_day, period.end.date())
        accounts = [a.id for a in store.list_accounts(conn)]
    drifts = []
    for account_id in accounts:
        counter = Admitter.read(runtime.redis, account_id, period)
        stored, in_log = ledger.get(account_id, 0), logged.get(account_id, 0)
        if counter is None and stored == 0 and in_log == 0:
            continue
        drifts.append(Drift(account_id, counter, stored, in_log))
    return drifts


def repair(runtime: Runtime, period: Period, drifts: list[Drift]) -> None:
    """Raise the lower side of every drift to the higher."""
    admitter = Admitter(runtime.redis)
    with runtime.database.connection() as conn:
        for drift in drifts:
            if drift.redis == drift.ledger == drift.repaired_to:
                continue
            admitter.raise_to(drift.account_id, period, drift.repaired_to)
            raise_used(conn, drift.account_id, period.first_day, drift.repaired_to)
