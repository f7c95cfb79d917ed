"""The quota period: the UTC calendar month containing a moment (`timo_hub.platform.months`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from timo_hub.platform.months import month_span

# Counters outlive their month by this much, so reconciliation can still read last month's.
COUNTER_GRACE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Period:
    """One UTC month: `[start, end)`. Derived values are computed once (they are read per call)."""

    start: datetime
    end: datetime
    label: str = field(init=False)
    """`YYYY-MM`, as used in counter keys."""
    reset_epoch: int = field(init=False)
    """Epoch seconds when the next period starts (`X-RateLimit-Reset`)."""
    counter_expires_at: int = field(init=False)
    """Epoch seconds after which the month's counter may disappear."""

    def __post_init__(self) -> None:
        reset = int(self.end.timestamp())
        object.__setattr__(self, "label", f"{self.start.year:04d}-{self.start.month:02d}")
        object.__setattr__(self, "reset_epoch", reset)
        object.__setattr__(self, "counter_expires_at", reset + COUNTER_GRACE_SECONDS)

    @property
    def first_day(self) -> date:
        """The month's first day, as the ledger stores it."""
        return self.start.date()

    def seconds_until_reset(self, now: float) -> int:
        """Whole seconds from `now` to the next period, rounded up, at least 1."""
        return max(1, math.ceil(self.end.timestamp() - now))


def period_containing(moment: datetime) -> Period:
    """The UTC month that contains `moment`."""
    return Period(*month_span(moment))


class PeriodClock:
    """`period_containing(now)`, recomputed only when the month changes (hot-path friendly)."""

    def __init__(self) -> None:
        self._period: Period | None = None
        self._valid_until = -math.inf
        self._valid_from = math.inf

    def current(self, now: float) -> Period:
        """The period containing epoch second `now`."""
        if not (self._valid_from <= now < self._valid_until):
            period = period_containing(datetime.fromtimestamp(now, UTC))
            self._period = period
            self._valid_from = period.start.timestamp()
            self._valid_until = period.end.timestamp()
        assert self._period is not None
        return self._period
