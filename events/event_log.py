"""The append-only event log and the `usage_daily` projection, in PostgreSQL.

Its monthly partitions are `events.partitions`; what counts against the quota is the quota's
business (`timo_hub.quota.counting`), not the log's.

`append()` is the exactly-once step: in the caller's transaction it inserts a batch of events,
ignoring any `(event_id, occurred_at)` already present, and folds *only the rows it actually
inserted* into `usage_daily`. A redelivered, duplicated or re-imported event therefore changes
nothing, and because the log and the projection change in one transaction they cannot disagree.
Functions take a connection first; SQL lives in named constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from events.model import ApiCallRecorded

APPEND_AND_FOLD = """
WITH incoming AS (
    SELECT * FROM unnest(
        %(event_ids)s::uuid[], %(occurred)s::timestamptz[], %(accounts)s::uuid[],
        %(keys)s::uuid[], %(methods)s::text[], %(endpoints)s::text[], %(statuses)s::smallint[],
        %(durations)s::float8[], %(request_ids)s::text[], %(versions)s::smallint[]
    ) AS i (event_id, occurred_at, account_id, key_id, method, endpoint, status, duration_ms,
            request_id, schema_version)
), appended AS (
    INSERT INTO events (event_id, occurred_at, account_id, key_id, method, endpoint, status,
                        duration_ms, request_id, schema_version)
    SELECT * FROM incoming
    ON CONFLICT (event_id, occurred_at) DO NOTHING
    RETURNING account_id, occurred_at, key_id, endpoint, status, duration_ms
), folded AS (
    INSERT INTO usage_daily AS u (account_id, day, key_id, endpoint, status, calls,
                                  duration_ms_sum)
    SELECT account_id, (occurred_at AT TIME ZONE 'UTC')::date, key_id, endpoint, status,
           count(*), sum(duration_ms)
    FROM appended
    GROUP BY 1, 2, 3, 4, 5
    -- A fixed order makes concurrent batches lock usage_daily rows in the same order.
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (account_id, day, key_id, endpoint, status) DO UPDATE
    SET calls = u.calls + EXCLUDED.calls,
        duration_ms_sum = u.duration_ms_sum + EXCLUDED.duration_ms_sum
    RETURNING 1
), past_changed AS (
    -- Events of a day already over when they arrive change the account's history (what its
    -- forecasts were computed from): noted for the intraday projection refresh.
    INSERT INTO usage_history_changes (account_id)
    SELECT DISTINCT account_id FROM appended
    WHERE occurred_at < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
)
SELECT (SELECT count(*) FROM appended)
"""

INSERT_RECEIPT = """
INSERT INTO event_batch_receipts (batch_id) VALUES (%(batch)s) ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id
"""
SELECT_RECEIPTS = "SELECT batch_id FROM event_batch_receipts WHERE batch_id = ANY(%(batches)s)"
DELETE_OLD_RECEIPTS = """
DELETE FROM event_batch_receipts WHERE received_at < now() - make_interval(days => %(days)s)
"""
INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (source, payload, payload_bytes, error) VALUES (%s, %s, %s, %s)
"""

DELETE_HISTORY_CHANGES = "DELETE FROM usage_history_changes WHERE changed_at < %(before)s"

REBUILD_USAGE_FOR_DAY = """
INSERT INTO usage_daily (account_id, day, key_id, endpoint, status, calls, duration_ms_sum)
SELECT account_id, %(day)s::date, key_id, endpoint, status, count(*), sum(duration_ms)
FROM events
WHERE occurred_at >= %(day)s::date AT TIME ZONE 'UTC'
  AND occurred_at < (%(day)s::date + 1) AT TIME ZONE 'UTC'
GROUP BY account_id, key_id, endpoint, status
"""
EVENT_DAYS_SINCE = """
SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date FROM events
WHERE occurred_at >= %(since)s::date AT TIME ZONE 'UTC' ORDER BY 1
"""


@dataclass(frozen=True)
class AppendResult:
    """How a batch went: how many events were new, how many were already in the log."""

    appended: int
    duplicates: int


def append(conn: psycopg.Connection, events: Sequence[ApiCallRecorded]) -> AppendResult:
    """Append new events and fold exactly those into `usage_daily`, in the caller's transaction."""
    if not events:
        return AppendResult(0, 0)
    params = {
        "event_ids": [e.event_id for e in events],
        "occurred": [e.occurred_at for e in events],
        "accounts": [e.account_id for e in events],
        "keys": [e.key_id for e in events],
        "methods": [e.method for e in events],
        "endpoints": [e.endpoint for e in events],
        "statuses": [e.status for e in events],
        "durations": [e.duration_ms for e in events],
        "request_ids": [e.request_id for e in events],
        "versions": [e.schema_version for e in events],
    }
    row = conn.execute(APPEND_AND_FOLD, params).fetchone()
    appended = int(row[0]) if row else 0
    return AppendResult(appended=appended, duplicates=len(events) - appended)


def record_receipt(conn: psycopg.Connection, batch_id: str) -> bool:
    """Record, in the caller's transaction, that a shipped batch has been ingested; False if it
    already had a receipt (it was ingested before)."""
    return conn.execute(INSERT_RECEIPT, {"batch": batch_id}).fetchone() is not None


def received_batches(conn: psycopg.Connection, batch_ids: Sequence[str]) -> set[str]:
    """Which of `batch_ids` have a receipt (one indexed query)."""
    if not batch_ids:
        return set()
    return {row[0] for row in conn.execute(SELECT_RECEIPTS, {"batches": list(batch_ids)})}


def forget_receipts(conn: psycopg.Connection, older_than_days: int) -> int:
    """Delete receipts older than `older_than_days`; returns how many."""
    cursor = conn.execute(DELETE_OLD_RECEIPTS, {"days": older_than_days})
    return cursor.rowcount


def record_dead_letter(conn: psycopg.Connection, source: str, payload: str, error: str) -> None:
    """Keep an unreadable message with the reason it was refused.

    Whatever the payload holds, the row can be stored: a NUL character (which a `text` column
    refuses) or a lone surrogate (which has no UTF-8) is kept exactly in `payload_bytes`, and
    `payload` holds a readable copy. A dead letter that could not be written would take its
    whole batch down with it.
    """
    text, exact = storable_text(payload)
    conn.execute(INSERT_DEAD_LETTER, (source, text, exact, storable_text(error)[0]))


def storable_text(text: str) -> tuple[str, bytes | None]:
    """`text` as PostgreSQL's `text` can hold it, and its exact bytes when that differs."""
    try:
        if "\0" not in text:
            text.encode("utf-8")
            return text, None
    except UnicodeEncodeError:
        pass
    exact = text.encode("utf-8", errors="surrogatepass")
    readable = exact.decode("utf-8", errors="replace").replace("\0", "\ufffd")
    return readable, exact


def event_days_since(conn: psycopg.Connection, since: date) -> list[date]:
    """The UTC days from `since` on that have events."""
    return [row[0] for row in conn.execute(EVENT_DAYS_SINCE, {"since": since})]


def rebuild_usage_day(conn: psycopg.Connection, day: date) -> None:
    """Recompute one day of `usage_daily` from the log."""
    conn.execute(REBUILD_USAGE_FOR_DAY, {"day": day})


def forget_history_changes(conn: psycopg.Connection, before: datetime) -> int:
    """Delete the notes of past changes made before `before`; returns how many."""
    return conn.execute(DELETE_HISTORY_CHANGES, {"before": before}).rowcount
