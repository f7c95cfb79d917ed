"""Usage statistics for an account: one read of `usage_daily`, then `analytics.stats`."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from analytics.stats import PERIODS, UsageStats, period_bounds, usage_stats
from timo_hub.db import Database
from timo_hub.usage import store


def account_usage_stats(
    database: Database, account_id: uuid.UUID, period: str, today: date
) -> UsageStats:
    """`period` (`7d`, `30d` or `90d`) ending `today`, with the period before it for comparison."""
    start, end = period_bounds(period, today)
    with database.connection() as conn:
        rows = store.usage_rows(conn, account_id, start - timedelta(days=PERIODS[period]), end)
        keys = store.key_labels(conn, account_id)
    return usage_stats(rows, period=period, today=today, keys=keys)
