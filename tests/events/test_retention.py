"""Partition upkeep: months ahead are created; months past retention go, their history stays."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from events import projection_rebuild
from events.ingest import ingest
from events.partitions import PartitionRegistry, existing_partitions
from events.retention import maintain, retention_floor
from tests.support.events import make_event
from timo_hub.platform.runtime import Runtime

TODAY = date(2026, 11, 28)


def test_the_coming_months_are_created_ahead(runtime: Runtime) -> None:
    with runtime.database.connection() as conn:
        maintain(conn, PartitionRegistry(), TODAY, retention_months=None)
        names = set(existing_partitions(conn))
    assert {"events_y2026m11", "events_y2026m12", "events_y2027m01"} <= names


def test_old_months_are_dropped_but_their_usage_history_and_floor_hold(runtime: Runtime) -> None:
    account = uuid.uuid4()
    old = datetime(2025, 8, 14, 9, tzinfo=UTC)  # 15 months before TODAY
    recent = datetime(2026, 11, 3, 9, tzinfo=UTC)
    partitions = PartitionRegistry()
    ingest(
        runtime.database,
        partitions,
        [make_event(account, occurred_at=t).to_json() for t in (old, old, recent)],
    )

    with runtime.database.connection() as conn:
        result = maintain(conn, partitions, TODAY, retention_months=13)
        assert "events_y2025m08" in result.dropped
        assert result.floor == date(2025, 10, 1) == retention_floor(conn)
        assert "events_y2025m08" not in existing_partitions(conn)

    # A late event for the dropped month is refused, not a reason to bring the month back.
    late = ingest(
        runtime.database,
        partitions,
        [make_event(account, occurred_at=datetime(2025, 8, 20, tzinfo=UTC)).to_json()],
    )
    assert (late.appended, late.dead_lettered) == (0, 1)
    assert "retention floor" in late.rejections[0]

    projection_rebuild.rebuild(runtime.database)  # must not erase what only usage_daily remembers
    with runtime.database.connection() as conn:
        calls = dict(
            conn.execute(
                "SELECT day::text, sum(calls) FROM usage_daily WHERE account_id = %s GROUP BY 1",
                (account,),
            ).fetchall()
        )
        assert "events_y2025m08" not in existing_partitions(conn)
    assert calls == {"2025-08-14": 2, "2026-11-03": 1}
