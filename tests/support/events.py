"""Making usage events and reading the log and projection back, for tests."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime

from events.ingest import append_batch
from events.model import ApiCallRecorded, new_event_id
from events.partitions import PartitionRegistry
from timo_hub.platform.runtime import Runtime


def make_event(
    account_id: uuid.UUID | None = None,
    *,
    occurred_at: datetime | None = None,
    status: int = 200,
    endpoint: str = "/api/v1/account",
    key_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    duration_ms: float = 1.5,
) -> ApiCallRecorded:
    """A valid event with sensible defaults."""
    return ApiCallRecorded(
        event_id=event_id or new_event_id(),
        occurred_at=occurred_at or datetime.now(UTC),
        account_id=account_id or uuid.uuid4(),
        key_id=key_id or uuid.uuid4(),
        method="GET",
        endpoint=endpoint,
        status=status,
        duration_ms=duration_ms,
        request_id=uuid.uuid4().hex,
    )


def log_counts(runtime: Runtime) -> Counter[tuple[str, str]]:
    """Events in the log per (account, UTC day)."""
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT account_id::text, (occurred_at AT TIME ZONE 'UTC')::date::text, count(*) "
            "FROM events GROUP BY 1, 2"
        ).fetchall()
    return Counter({(a, d): n for a, d, n in rows})


def projection_counts(runtime: Runtime) -> Counter[tuple[str, str]]:
    """Calls in `usage_daily` per (account, day)."""
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT account_id::text, day::text, sum(calls) FROM usage_daily GROUP BY 1, 2"
        ).fetchall()
    return Counter({(a, d): int(n) for a, d, n in rows})


def usage_rows(runtime: Runtime) -> list[tuple]:
    """Every `usage_daily` row, sorted (for comparing a live projection with a rebuild)."""
    with runtime.database.connection() as conn:
        return conn.execute(
            "SELECT account_id, day, key_id, endpoint, status, calls, "
            "round(duration_ms_sum::numeric, 3) FROM usage_daily ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()


def seed_calls(
    runtime: Runtime,
    account_id: uuid.UUID,
    calls_by_day: dict[date, int],
    *,
    key_id: uuid.UUID | None = None,
    status: int = 200,
    endpoint: str = "/account",
    duration_ms: float = 2.0,
    hour: int = 12,
) -> int:
    """Append `calls_by_day[day]` events per day to the log (and so `usage_daily`).

    Goes through the ingestion path (`append_batch`), so the projection is the real one.
    """
    partitions = PartitionRegistry()
    batch: list[ApiCallRecorded] = []
    total = 0
    for day, calls in calls_by_day.items():
        moment = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        for _ in range(calls):
            batch.append(
                make_event(
                    account_id,
                    occurred_at=moment,
                    status=status,
                    endpoint=endpoint,
                    key_id=key_id,
                    duration_ms=duration_ms,
                )
            )
            if len(batch) >= 5000:
                total += append_batch(runtime.database, partitions, batch).appended
                batch = []
    if batch:
        total += append_batch(runtime.database, partitions, batch).appended
    return total
