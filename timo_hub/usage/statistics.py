"""Usage statistics for an account: sums from `usage_daily`, then `analytics.stats`."""

from __future__ import annotations

import uuid
from datetime import date

from analytics.stats import UsageStats, usage_stats
from timo_hub.db import Database
from timo_hub.usage import store


def account_usage_stats(
    database: Database, account_id: uuid.UUID, period: str, today: date
) -> UsageStats:
    """`period` (`7d`, `30d` or `90d`) ending `today`, with the period before it for comparison."""
    with database.connection() as conn:
        sums = store.usage_sums(conn, account_id, period, today)
        keys = store.key_labels(conn, account_id)
    return usage_stats(sums, period=period, today=today, keys=keys)
