"""The log and its projection in PostgreSQL: exactly once, on the day each call occurred."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from events import event_log
from events.ingest import ingest, ingest_message
from events.partitions import PartitionRegistry, existing_partitions, partition_name
from tests.support.events import log_counts, make_event, projection_counts
from timo_hub.platform.months import month_start
from timo_hub.platform.runtime import Runtime


def _append(runtime: Runtime, events) -> event_log.AppendResult:  # type: ignore[no-untyped-def]
    partitions = PartitionRegistry()
    with runtime.database.connection() as conn:
        partitions.ensure(conn, {month_start(e.occurred_at) for e in events})
        with conn.transaction():
            return event_log.append(conn, events)


def test_duplicates_in_and_across_batches_count_once(runtime: Runtime) -> None:
    account = uuid.uuid4()
    first = [make_event(account) for _ in range(5)]
    result = _append(runtime, [*first, first[0], first[1]])
    assert (result.appended, result.duplicates) == (5, 2)
    again = _append(runtime, first)
    assert (again.appended, again.duplicates) == (0, 5)
    assert sum(log_counts(runtime).values()) == 5
    assert sum(projection_counts(runtime).values()) == 5


def test_late_events_land_on_the_day_they_occurred_in_their_months_partition(
    runtime: Runtime,
) -> None:
    account = uuid.uuid4()
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=75)
    _append(
        runtime, [make_event(account, occurred_at=now), make_event(account, occurred_at=long_ago)]
    )
    days = {day for (_, day) in projection_counts(runtime)}
    assert days == {now.date().isoformat(), long_ago.date().isoformat()}
    with runtime.database.connection() as conn:
        names = existing_partitions(conn)
    assert partition_name(month_start(long_ago)) in names
    assert partition_name(month_start(now)) in names


def test_projection_keeps_key_endpoint_status_and_duration(runtime: Runtime) -> None:
    account, key = uuid.uuid4(), uuid.uuid4()
    when = datetime(2026, 11, 2, 10, tzinfo=UTC)
    _append(
        runtime,
        [
            make_event(account, key_id=key, occurred_at=when, status=200, duration_ms=2.0),
            make_event(account, key_id=key, occurred_at=when, status=200, duration_ms=3.0),
            make_event(
                account, key_id=key, occurred_at=when, status=429, endpoint="/api/v1/account/quota"
            ),
        ],
    )
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT endpoint, status, calls, duration_ms_sum FROM usage_daily "
            "WHERE account_id = %s AND day = '2026-11-02' ORDER BY status",
            (account,),
        ).fetchall()
    assert rows == [("/api/v1/account", 200, 2, 5.0), ("/api/v1/account/quota", 429, 1, 1.5)]


def test_two_writers_with_the_same_events_count_them_once(runtime: Runtime) -> None:
    account = uuid.uuid4()
    events = [make_event(account) for _ in range(300)]
    barrier = threading.Barrier(2)
    results = []

    def writer() -> None:
        barrier.wait()
        results.append(_append(runtime, list(reversed(events)) if results else events))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.appended for r in results) == 300
    assert sum(log_counts(runtime).values()) == sum(projection_counts(runtime).values()) == 300


def test_unreadable_payloads_are_dead_lettered_without_blocking_the_rest(runtime: Runtime) -> None:
    good = make_event()
    result = ingest(
        runtime.database,
        PartitionRegistry(),
        [good.to_json(), "{not json", '{"event_id": "x"}', 42],
    )
    assert (result.appended, result.dead_lettered) == (1, 3)
    whole = ingest_message(runtime.database, PartitionRegistry(), {"not": "a list"})
    assert whole.dead_lettered == 1
    with runtime.database.connection() as conn:
        errors = [r[0] for r in conn.execute("SELECT error FROM dead_letters ORDER BY id")]
    assert len(errors) == 4
    assert errors[-1] == "message is not a list"


def test_partition_creation_is_idempotent_across_registries(runtime: Runtime) -> None:
    month = month_start(datetime(2031, 3, 9, tzinfo=UTC))
    with runtime.database.connection() as conn:
        assert PartitionRegistry().ensure(conn, [month]) == ["events_y2031m03"]
        assert PartitionRegistry().ensure(conn, [month]) == []
