"""The one rule of which calls count against the quota, and the counts it gives.

A call counts when it was admitted and served: everything an authenticated caller was answered
except a refusal (403 for a suspended account, 429 over a limit) and our own failures (every 5xx:
a 503 when admission could not run, and any 5xx the handler answered, which is refunded from
every window). Calls that fail validation (400/404/415/422) were served and count; 401s never
reach an account.

The counts here read the `usage_daily` projection of the event log, so they trail the live
counter by the events still in flight; the quota's own ledger covers those (`quota.ledger`).
"""

from __future__ import annotations

import uuid
from datetime import date

import psycopg

REFUSED_STATUSES = (403, 429)
"""Refusals: the call was not admitted."""
SERVER_ERRORS_FROM = 500
"""Our failures, never charged: every status from here up."""

COUNTED_STATUS = "(status < 500 AND status NOT IN (403, 429))"
"""`counts()` as an SQL condition on a `status` column."""


def counts(status: int) -> bool:
    """Whether a call answered `status` counts against the quota."""
    return status < SERVER_ERRORS_FROM and status not in REFUSED_STATUSES


COUNTED_CALLS = f"""
SELECT account_id, coalesce(sum(calls), 0) FROM usage_daily
WHERE day >= %(start)s AND day < %(end)s AND {COUNTED_STATUS}
  AND (%(account)s::uuid IS NULL OR account_id = %(account)s::uuid)
GROUP BY account_id
"""
COUNTED_BY_DAY = f"""
SELECT day, sum(calls)::bigint
FROM usage_daily
WHERE account_id = %(account)s AND day >= %(first)s AND day <= %(last)s
  AND {COUNTED_STATUS}
GROUP BY day
"""

COUNTED_BY_ACCOUNT_AND_DAY = f"""
SELECT account_id, day, sum(calls)::bigint
FROM usage_daily
WHERE account_id = ANY(%(accounts)s) AND day >= %(first)s AND day <= %(last)s
  AND {COUNTED_STATUS}
GROUP BY account_id, day
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
    }
    return {day: int(calls) for day, calls in conn.execute(COUNTED_BY_DAY, params)}


def counted_calls_by_account_and_day(
    conn: psycopg.Connection, account_ids: list[uuid.UUID], first: date, last: date
) -> dict[uuid.UUID, dict[date, int]]:
    """`counted_calls_by_day` of many accounts in one statement (every account given is a key)."""
    by_account: dict[uuid.UUID, dict[date, int]] = {account: {} for account in account_ids}
    params = {"accounts": account_ids, "first": first, "last": last}
    for account, day, calls in conn.execute(COUNTED_BY_ACCOUNT_AND_DAY, params):
        by_account[account][day] = int(calls)
    return by_account
