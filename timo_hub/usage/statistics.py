"""Usage statistics for an account: sums from `usage_daily`, then `analytics.stats`."""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING

from timo_hub.accounts import store as accounts_store
from timo_hub.platform.db import Database
from timo_hub.quota import counting
from timo_hub.usage import daily_usage

if TYPE_CHECKING:
    from analytics.parameters import PeriodChoice
    from analytics.stats import UsageStats


def counted_calls_this_month(
    database: Database, account_id: uuid.UUID, today: date
) -> dict[date, int]:
    """The calls that count against the quota on each day of `today`'s month so far (refusals
    and our own failures excluded): what the forecast learns from and projects."""
    with database.connection() as conn:
        return counting.counted_calls_by_day(conn, account_id, today.replace(day=1), today)


def account_usage_stats(
    database: Database, account_id: uuid.UUID, period: PeriodChoice, today: date
) -> UsageStats:
    """`period` (`7d`, `30d` or `90d`) ending `today`, with the period before it for comparison."""
    from analytics.stats import KeyLabel, usage_stats  # pandas: see `daily_usage.usage_sums`

    with database.connection() as conn:
        sums = daily_usage.usage_sums(conn, account_id, period, today)
        labels = accounts_store.key_labels(conn, account_id)
    keys = {key_id: KeyLabel(name, prefix) for key_id, (name, prefix) in labels.items()}
    return usage_stats(
        sums, period=period, today=today, keys=keys, refused=counting.REFUSED_STATUSES
    )
