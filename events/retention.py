"""Partition upkeep for the event log: months created ahead, months past retention dropped.

Run daily by beat (`timo.events.maintain_partitions`) and safe to run any time, from any number of
workers: creation is idempotent under the partition advisory lock, and a drop first raises the
retention floor (in the same transaction), so ingestion and rebuilds respect it from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import psycopg
from psycopg import sql

from events import event_log
from events.partitions import (
    PARTITION_LOCK_KEY,
    PartitionRegistry,
    existing_partitions,
    partition_month,
)
from timo_hub.platform.months import add_months, month_start

MONTHS_AHEAD = 2
# A web process finds a batch's receipt within a second of it being written while it runs; after a
# restart its spool is re-shipped in new ranges (new ids). A day is ample; a batch shipped after
# that is deduplicated by the log event by event and gets a new receipt.
RECEIPT_DAYS = 1
SELECT_FLOOR = "SELECT floor FROM events_retention"
RAISE_FLOOR = """
INSERT INTO events_retention (singleton, floor) VALUES (true, %(floor)s)
ON CONFLICT (singleton) DO UPDATE SET floor = greatest(events_retention.floor, EXCLUDED.floor)
"""


@dataclass(frozen=True)
class Maintenance:
    """What one run did."""

    created: list[str]
    dropped: list[str]
    floor: date | None


def retention_floor(conn: psycopg.Connection) -> date | None:
    """The first day whose raw events are kept (None: nothing was ever dropped)."""
    row = conn.execute(SELECT_FLOOR).fetchone()
    return row[0] if row else None


def maintain(
    conn: psycopg.Connection,
    registry: PartitionRegistry,
    today: date,
    retention_months: int | None,
) -> Maintenance:
    """Create this and the next months' partitions; drop whole months older than retention."""
    this_month = month_start(today)
    created = registry.ensure(conn, [add_months(this_month, i) for i in range(MONTHS_AHEAD + 1)])
    dropped: list[str] = []
    floor = retention_floor(conn)
    if retention_months is not None:
        cutoff = add_months(this_month, -retention_months)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
            conn.execute(RAISE_FLOOR, {"floor": cutoff})
            for name in existing_partitions(conn):
                if partition_month(name) < cutoff:
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    dropped.append(name)
        floor = retention_floor(conn)
        if dropped:
            registry.forget()
    with conn.transaction():
        event_log.forget_receipts(conn, RECEIPT_DAYS)
    return Maintenance(created=created, dropped=dropped, floor=floor)
