"""Rebuilding `usage_daily` from the event log, day by day, while ingestion keeps running.

Each day is rebuilt in its own short transaction that first locks `usage_daily` against writers
(`SHARE ROW EXCLUSIVE`): an ingest batch in flight finishes first, the next one waits, so the
day's rows are recomputed from exactly the committed events and no live increment is lost or
applied twice. Days whose raw events were dropped by retention are left alone: the projection is
their only history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from events import event_log
from events.partitions import existing_partitions, partition_month
from events.retention import retention_floor
from timo_hub.platform.db import Database

LOCK_PROJECTION = "LOCK TABLE usage_daily IN SHARE ROW EXCLUSIVE MODE"
DELETE_DAY = "DELETE FROM usage_daily WHERE day = %(day)s"
PROJECTION_DAYS_SINCE = "SELECT DISTINCT day FROM usage_daily WHERE day >= %(since)s ORDER BY 1"


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild covered."""

    days: int
    since: date | None


def retained_since(database: Database) -> date | None:
    """The first day whose raw events the log still has: the retention floor, else the oldest
    partition's month (None when there are no events at all)."""
    with database.connection() as conn:
        names = existing_partitions(conn)
        floor = retention_floor(conn)
    if not names:
        return None
    first = partition_month(names[0])  # existing_partitions() is oldest first
    return max(first, floor) if floor else first


def days_to_rebuild(database: Database, since: date | None) -> list[date]:
    """Days from `since` (default: all retained) that have events or projection rows."""
    floor = retained_since(database)
    if floor is None:
        return []
    start = max(since, floor) if since else floor
    with database.connection() as conn:
        with_events = set(event_log.event_days_since(conn, start))
        projected = {row[0] for row in conn.execute(PROJECTION_DAYS_SINCE, {"since": start})}
    return sorted(with_events | projected)


def rebuild(
    database: Database, since: date | None = None, progress: Callable[[int], object] | None = None
) -> RebuildResult:
    """Recompute `usage_daily` from the log for every retained day from `since` on."""
    days = days_to_rebuild(database, since)
    for day in days:
        with database.connection() as conn, conn.transaction():
            conn.execute(LOCK_PROJECTION)
            conn.execute(DELETE_DAY, {"day": day})
            event_log.rebuild_usage_day(conn, day)
        if progress is not None:
            progress(1)
    return RebuildResult(days=len(days), since=since)
