"""The event log's monthly partitions: their names, which exist, and creating missing ones.

`events` is partitioned by UTC month of `occurred_at`; partition `events_yYYYYmMM` holds that
month. This module is the only one that makes or reads those names. DDL on partitions (creation
here, drops in `events.retention`) is serialised across processes by `PARTITION_LOCK_KEY`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import date

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from timo_hub.platform.months import next_month

PARTITION_LOCK_KEY = 0x74696D70  # "timp": serialises partition DDL across workers

EXISTING_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
"""
CREATE_PARTITION = (
    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ({start}) TO ({end})"
)
_NAME = re.compile(r"^events_y(\d{4})m(\d{2})$")


class UnpartitionableMonthError(ValueError):
    """No partition can hold this month (the year 9999's December ends past the last date)."""


def partition_name(month: date) -> str:
    """`events_yYYYYmMM`, the partition of `month`'s events."""
    return f"events_y{month.year:04d}m{month.month:02d}"


def partition_month(name: str) -> date:
    """The first day of the month a partition holds (the inverse of `partition_name`)."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"not an event partition: {name!r}")
    return date(int(match[1]), int(match[2]), 1)


def existing_partitions(conn: psycopg.Connection) -> list[str]:
    """Names of the event log's partitions, oldest month first."""
    return sorted(row[0] for row in conn.execute(EXISTING_PARTITIONS))


class PartitionRegistry:
    """Which monthly partitions exist; creates missing ones (idempotent, concurrency-safe)."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, conn: psycopg.Connection, months: Iterable[date]) -> list[str]:
        """Make sure a partition exists for each month; return the names created now."""
        wanted = {partition_name(m): m for m in months}
        with self._lock:
            missing = {n: m for n, m in wanted.items() if n not in self._known}
        if not missing:
            return []
        created = []
        # DDL in its own transaction, under an advisory lock, so that concurrent workers do not
        # race each other's CREATE and a batch's transaction holds no DDL locks. Only a
        # transaction of its own commits here: inside the caller's (a savepoint) the partition
        # exists only once the caller commits, so it is not remembered, lest a rollback leave the
        # cache believing in a partition that is not there.
        own_transaction = conn.info.transaction_status == TransactionStatus.IDLE
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
            existing = {row[0] for row in conn.execute(EXISTING_PARTITIONS)}
            for name, month in sorted(missing.items()):
                if name not in existing:
                    try:
                        end = next_month(month)
                    except ValueError:
                        raise UnpartitionableMonthError(f"no partition can hold {month}") from None
                    conn.execute(
                        sql.SQL(CREATE_PARTITION).format(
                            name=sql.Identifier(name),
                            start=sql.Literal(f"{month.isoformat()} 00:00:00+00"),
                            end=sql.Literal(f"{end.isoformat()} 00:00:00+00"),
                        )
                    )
                    created.append(name)
            existing.update(missing)
        if own_transaction:
            with self._lock:
                self._known.update(existing)
        return created

    def forget(self) -> None:
        """Drop the cache (after partitions were dropped)."""
        with self._lock:
            self._known.clear()
