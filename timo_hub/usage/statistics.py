"""Usage statistics for an account: sums from `usage_daily`, then `analytics.stats`."""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING

from timo_hub.platform.db import Database
from timo_hub.usage import store

if TYPE_CHECKING:
    from analytics.stats import UsageStats


def account_usage_stats(
    database: Database, account_id: uuid.UUID, period: str, today: date
) -> UsageStats:
    """`period` (`7d`, `30d` or `90d`) ending `today`, with the period before it for comparison."""
    from analytics.stats import usage_stats  # pandas: see `store.usage_sums`

    with database.connection() as conn:
        sums = store.usage_sums(conn, account_id, period, today)
        keys = store.key_labels(conn, account_id)
    return usage_stats(sums, period=period, today=today, keys=keys)
