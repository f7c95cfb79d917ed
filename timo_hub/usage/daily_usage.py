"""Reading the `usage_daily` projection for an account's statistics.

Every function takes a connection first; the caller owns the transaction. Sums are done in the
database, so the cost grows with the days asked for, not with the calls made.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from analytics.parameters import PeriodChoice
    from analytics.stats import UsageSums

# One pass over the period's rows, summed three ways; GROUPING() says which sum a row is:
# 3 = by (day, status), 13 = by endpoint, 14 = by key.
USAGE_SUMS = """
SELECT GROUPING(day, status, endpoint, key_id), day, status, endpoint, key_id,
       sum(calls)::bigint, sum(duration_ms_sum)
FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
GROUP BY GROUPING SETS ((day, status), (endpoint), (key_id))
"""
BY_DAY_STATUS, BY_ENDPOINT, BY_KEY = 3, 13, 14
TOTAL_CALLS = """
SELECT coalesce(sum(calls), 0)::bigint FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
"""


def usage_sums(
    conn: psycopg.Connection, account_id: uuid.UUID, period: PeriodChoice, today: date
) -> UsageSums:
    """The account's usage in `period` ending `today`, summed in the database."""
    # pandas only when asked: it would add most of a second to every web worker's boot.
    import pandas as pd

    from analytics.stats import UsageSums, period_bounds

    first, last = period_bounds(period, today)
    params = {"account": account_id, "first": first, "last": last}
    by_day_status, by_endpoint, by_key = [], [], []
    for grouping, day, status, endpoint, key_id, calls, duration in conn.execute(
        USAGE_SUMS, params
    ):
        if grouping == BY_DAY_STATUS:
            by_day_status.append((day, status, calls, duration))
        elif grouping == BY_ENDPOINT:
            by_endpoint.append((endpoint, calls))
        elif grouping == BY_KEY:
            by_key.append((key_id, calls))
    length = last - first + timedelta(days=1)
    # The previous period's first N-1 days: they line up with this period's complete days.
    previous = {"account": account_id, "first": first - length, "last": first - timedelta(days=2)}
    row = conn.execute(TOTAL_CALLS, previous).fetchone()
    return UsageSums(
        by_day_status=pd.DataFrame(
            by_day_status, columns=["day", "status", "calls", "duration_ms_sum"]
        ),
        by_endpoint=pd.DataFrame(by_endpoint, columns=["endpoint", "calls"]),
        by_key=pd.DataFrame(by_key, columns=["key_id", "calls"]),
        previous_total=int(row[0]) if row else 0,
    )
