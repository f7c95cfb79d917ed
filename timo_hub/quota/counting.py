"""The one rule of which calls count against the quota, and the counts it gives.

A call counts when it was admitted: everything an authenticated caller was answered except a
refusal (403 for a suspended account, 429 over quota) and a 503 (admission could not run). Calls
that fail validation (400/404/415/422) were admitted and count; 401s never reach an account.

The counts here read the `usage_daily` projection of the event log, so they trail the live
counter by the events still in flight; the quota's own ledger covers those (`quota.ledger`).
"""

from __future__ import annotations

import uuid
from datetime import date

import psycopg

NOT_COUNTED_STATUSES = (403, 429, 503)


def counts(status: int) -> bool:
    """Whether a call answered `status` counts against the quota."""
    return status not in NOT_COUNTED_STATUSES


COUNTED_CALLS = """
SELECT account_id, coalesce(sum(calls), 0) FROM usage_daily
WHERE day >= %(start)s AND day < %(end)s AND status <> ALL(%(not_counted)s)
  AND (%(account)s::uuid IS NULL OR account_id = %(account)s::uuid)
GROUP BY account_id
"""
COUNTED_BY_DAY = """
SELECT day, sum(calls)::bigint
FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
  AND status <> ALL(%(not_counted)s)
GROUP BY day
"""


def counted_calls(
    conn: psycopg.Connection, start: date, end: date, account_id: uuid.UUID | None = None
) -> dict[uuid.UUID, int]:
    """Counted calls per account on the days `[start, end)` (one account's, when given)."""
    rows = conn.execute(
        COUNTED_CALLS,
        {
            "start": start,
            "end": end,
            "account": account_id,
            "not_counted": list(NOT_COUNTED_STATUSES),
        },
    )
    return {row[0]: int(row[1]) for row in rows}


def counted_calls_by_day(
    conn: psycopg.Connection, account_id: uuid.UUID, first: date, last: date
) -> dict[date, int]:
    """One account's counted calls per day, for the days `first..last` that have any."""
    params = {
        "account": account_id,
        "first": first,
        "last": last,
        "not_counted": list(NOT_COUNTED_STATUSES),
    }
    return {day: int(calls) for day, calls in conn.execute(COUNTED_BY_DAY, params)}
