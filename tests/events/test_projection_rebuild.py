"""Rebuild equals live, and both equal a pure-Python count, for any stream of events."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import projection_rebuild
from events.ingest import ingest
from events.model import ApiCallRecorded
from events.partitions import PartitionRegistry
from tests.support.events import make_event, usage_rows
from timo_hub.platform.runtime import Runtime

ACCOUNTS = [uuid.UUID(int=i + 1) for i in range(3)]
KEYS = [uuid.UUID(int=100 + i) for i in range(2)]
BASE = datetime(2026, 9, 28, 22, 0, tzinfo=UTC)  # spans a month end and several days

event_strategy = st.builds(
    lambda account, key, minutes, status, endpoint, ms: make_event(
        account,
        key_id=key,
        occurred_at=BASE + timedelta(minutes=minutes),
        status=status,
        endpoint=endpoint,
        duration_ms=ms,
    ),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(KEYS),
    st.integers(0, 60 * 24 * 6),
    st.sampled_from([200, 201, 404, 422, 429]),
    st.sampled_from(["/api/v1/account", "/api/v1/account/quota"]),
    st.floats(0, 50, allow_nan=False).map(lambda x: round(x, 3)),
)


def _reset(runtime: Runtime) -> None:
    with runtime.database.connection() as conn:
        conn.execute("TRUNCATE events, usage_daily")


def _reference(events: list[ApiCallRecorded]) -> Counter[tuple]:
    unique = {(e.event_id, e.occurred_at): e for e in events}.values()
    return Counter(
        (e.account_id, e.occurred_at.date(), e.key_id, e.endpoint, e.status) for e in unique
    )


def _projection(runtime: Runtime) -> Counter[tuple]:
    return Counter({row[:5]: row[5] for row in usage_rows(runtime)})


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(event_strategy, min_size=1, max_size=60),
    st.lists(st.integers(0, 59), max_size=30),
    st.randoms(use_true_random=False),
    st.integers(1, 20),
)
def test_live_equals_rebuild_equals_reference(
    runtime: Runtime,
    events: list,
    duplicate_picks: list[int],
    rng,
    batch: int,  # type: ignore[no-untyped-def]
) -> None:
    _reset(runtime)
    stream = list(events) + [events[i % len(events)] for i in duplicate_picks]
    rng.shuffle(stream)  # late and out-of-order arrivals, duplicates anywhere
    partitions = PartitionRegistry()
    for start in range(0, len(stream), batch):
        ingest(runtime.database, partitions, [e.to_json() for e in stream[start : start + batch]])

    expected = _reference(stream)
    live_rows = usage_rows(runtime)
    assert _projection(runtime) == expected

    projection_rebuild.rebuild(runtime.database)
    assert usage_rows(runtime) == live_rows


def test_rebuild_since_a_day_leaves_earlier_days_alone(runtime: Runtime) -> None:
    account = uuid.uuid4()
    days = [datetime(2026, 10, d, 12, tzinfo=UTC) for d in (1, 2, 3)]
    ingest(
        runtime.database,
        PartitionRegistry(),
        [make_event(account, occurred_at=d).to_json() for d in days],
    )
    with runtime.database.connection() as conn:
        # Simulate a corrupted projection on all three days.
        conn.execute("UPDATE usage_daily SET calls = 99 WHERE account_id = %s", (account,))
    result = projection_rebuild.rebuild(runtime.database, since=days[1].date())
    assert result.days == 2
    with runtime.database.connection() as conn:
        calls = dict(
            conn.execute(
                "SELECT day::text, calls FROM usage_daily WHERE account_id = %s", (account,)
            ).fetchall()
        )
    assert calls == {"2026-10-01": 99, "2026-10-02": 1, "2026-10-03": 1}
