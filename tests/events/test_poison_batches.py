"""A bad line or a failed batch must not stop the rest: real PostgreSQL, the worker's code path.

Each test names the defect it guards against (issue 14, items 1 and 2).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from events import ingest as ingest_module
from events.ingest import ingest
from events.partitions import PartitionRegistry, existing_partitions, partition_name
from events.retention import maintain
from tests.support.events import log_counts, make_event
from timo_hub.platform.months import month_start
from timo_hub.platform.runtime import Runtime


def _dead_letters(runtime: Runtime) -> list[tuple[str, bytes | None, str]]:
    with runtime.database.connection() as conn:
        rows = conn.execute("SELECT payload, payload_bytes, error FROM dead_letters ORDER BY id")
        return [(p, bytes(b) if b is not None else None, e) for p, b, e in rows]


def test_a_nul_byte_in_an_unreadable_line_is_dead_lettered_and_its_neighbours_kept(
    runtime: Runtime,
) -> None:
    # Guards the defect where the raw line went into `dead_letters.payload` (text) with its NUL:
    # PostgreSQL refused it (DataError), the whole batch rolled back, the task did not retry,
    # and the publisher re-shipped the batch forever.
    good = [make_event() for _ in range(3)]
    poison = '{"event_id": "\x00 not json'
    result = ingest(
        runtime.database,
        PartitionRegistry(),
        [good[0].to_json(), poison, good[1].to_json(), good[2].to_json()],
        batch_id="segment-a:0-100",
    )
    assert (result.appended, result.dead_lettered) == (3, 1)
    assert sum(log_counts(runtime).values()) == 3
    ((payload, exact, error),) = _dead_letters(runtime)
    assert "\x00" not in payload and payload.startswith('{"event_id": "')
    assert exact == poison.encode()  # kept exactly, as bytes
    assert error
    with runtime.database.connection() as conn:
        (receipts,) = conn.execute("SELECT count(*) FROM event_batch_receipts").fetchone()
    assert receipts == 1  # the batch is done: the web process may retire it


def test_a_nul_inside_a_valid_looking_event_is_dead_lettered_not_inserted(
    runtime: Runtime,
) -> None:
    # Guards the defect where a JSON-escaped NUL (`\u0000`) in a string field passed the model,
    # then failed the insert into `events` (DataError) and took the whole batch down with it.
    good = make_event()
    poisoned = make_event().to_json().replace('"method":"GET"', '"method":"GE\\u0000T"')
    result = ingest(runtime.database, PartitionRegistry(), [good.to_json(), poisoned])
    assert (result.appended, result.dead_lettered) == (1, 1)
    ((payload, _exact, error),) = _dead_letters(runtime)
    assert "method" in error
    assert payload == poisoned  # the escape is text PostgreSQL can hold


def test_an_event_the_database_cannot_take_is_dead_lettered_and_its_batch_appended(
    runtime: Runtime,
) -> None:
    # Guards the defect where an event the model accepts but the log cannot take (here one in
    # December 9999, whose partition would end in the year 10000) failed its whole batch, which
    # the task did not retry and the web process re-shipped forever.
    good = [make_event() for _ in range(3)]
    far = make_event(occurred_at=datetime(9999, 12, 31, 23, tzinfo=UTC))
    lines = [good[0].to_json(), far.to_json(), good[1].to_json(), good[2].to_json()]
    result = ingest(runtime.database, PartitionRegistry(), lines, batch_id="segment-b:0-400")
    assert (result.appended, result.dead_lettered) == (3, 1)
    assert sum(log_counts(runtime).values()) == 3
    ((payload, _exact, error),) = _dead_letters(runtime)
    assert payload == far.to_json() and "refused" in error
    again = ingest(runtime.database, PartitionRegistry(), lines, batch_id="segment-b:0-400")
    assert (again.appended, again.duplicates) == (0, 3)  # a re-sent batch adds nothing
    # ...and no second dead letter: a redelivered batch's letters were written the first time.
    assert len(_dead_letters(runtime)) == 1
    with runtime.database.connection() as conn:
        (receipts,) = conn.execute("SELECT count(*) FROM event_batch_receipts").fetchone()
    assert receipts == 1


def test_a_batch_that_fails_after_creating_a_partition_does_not_poison_the_cache(
    runtime: Runtime,
) -> None:
    # Guards the defect where `ensure` created the partition in a savepoint of the batch's
    # transaction and marked it known at once: the batch failed and rolled the partition back,
    # and every clean retry skipped creating it and failed with CheckViolation.
    partitions = PartitionRegistry()
    month = month_start(datetime(2032, 7, 14, tzinfo=UTC))
    name = partition_name(month)
    event = make_event(uuid.uuid4(), occurred_at=datetime(2032, 7, 14, 12, tzinfo=UTC))
    with runtime.database.connection() as conn:
        conn.execute("SELECT 1")  # the batch's transaction is open, as ingest's floor read left it
        partitions.ensure(conn, [month])
        conn.rollback()  # the batch failed after `ensure`
        assert name not in existing_partitions(conn)
    # A clean retry with the same registry (same worker process) must succeed.
    result = ingest(runtime.database, partitions, [event.to_json()])
    assert result.appended == 1
    with runtime.database.connection() as conn:
        assert name in existing_partitions(conn)


def test_a_partition_dropped_during_ingest_does_not_come_back_for_an_event_below_the_floor(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the retry after a CheckViolation: the batch read the retention floor, retention
    # then raised it and dropped the month; the retry recreated the partition for an event that
    # is now below the floor. The first floor read is made to return the floor as it was before
    # that concurrent retention run.
    partitions = PartitionRegistry()
    old_month = datetime(2025, 3, 10, 12, tzinfo=UTC)
    assert ingest(runtime.database, partitions, [make_event(occurred_at=old_month).to_json()])
    with runtime.database.connection() as conn:
        maintain(conn, PartitionRegistry(), date(2025, 9, 15), retention_months=3)
        assert partition_name(month_start(old_month)) not in existing_partitions(conn)
    reads = []

    def floor_as_it_was_first(conn: object) -> date | None:
        reads.append(True)
        return None if len(reads) == 1 else real_floor(conn)  # type: ignore[arg-type]

    real_floor = ingest_module.retention_floor
    monkeypatch.setattr(ingest_module, "retention_floor", floor_as_it_was_first)
    late = make_event(occurred_at=old_month + timedelta(hours=1))
    result = ingest(runtime.database, partitions, [late.to_json()])  # the cache still knows M
    assert (result.appended, result.dead_lettered) == (0, 1)
    with runtime.database.connection() as conn:
        assert partition_name(month_start(old_month)) not in existing_partitions(conn)
