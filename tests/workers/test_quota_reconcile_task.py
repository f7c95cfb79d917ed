"""Beat schedules quota reconcile; a real worker runs it, repairs, counts and logs the repair."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask

from api.gate import QUOTA_EXTENSION
from tests.support.accounts import new_customer
from tests.support.log_capture import captured
from tests.support.waiting import eventually
from timo_hub.platform.runtime import Runtime
from timo_hub.quota import metrics
from timo_hub.quota.admission import counter_key
from timo_hub.quota.period import period_containing
from workers.celery_app import TimoCelery
from workers.schedule import BEAT_SCHEDULE
from workers.tasks import reconcile_quota


@pytest.fixture
def task_log() -> Iterator[io.StringIO]:
    """What the tasks module logs, at INFO and above."""
    with captured("workers.tasks") as lines:
        yield lines


def test_beat_runs_quota_reconcile_every_minute() -> None:
    """Guards against a counter behind PostgreSQL staying behind until an operator noticed:
    reconcile existed only as a command, and nothing ran it."""
    (entry,) = [e for e in BEAT_SCHEDULE.values() if e["task"] == reconcile_quota.name]
    assert entry["schedule"] == 60.0
    # A run that waited behind a backlog for longer than its interval is dropped, not stacked.
    assert entry["options"]["expires"] == 60.0


def test_the_scheduled_reconcile_raises_a_lowered_counter_and_reports_it(
    app: Flask,
    runtime: Runtime,
    celery_app: TimoCelery,
    celery_worker: object,
    task_log: io.StringIO,
) -> None:
    period = period_containing(datetime.now(UTC))
    lowered, untouched = new_customer(runtime), new_customer(runtime)
    client = app.test_client()
    for customer, calls in ((lowered, 6), (untouched, 2)):
        for _ in range(calls):
            assert client.get("/api/v1/account/quota", headers=customer.auth).status_code == 200
    app.extensions[QUOTA_EXTENSION].ledger.flush()
    # As the sync thread does once they expire: the counters hold the calls made, nothing ahead.
    app.extensions[QUOTA_EXTENSION].leases.end_due(time.monotonic(), every=True)
    lowered_key = counter_key(lowered.account.id, period)
    runtime.redis.set(lowered_key, 2, keepttl=True)  # what a lagging replica or a bad SET leaves

    runs = metrics.RECONCILE_RUNS._value.get()
    repaired = metrics.COUNTERS_REPAIRED._value.get()
    restored = metrics.CALLS_RESTORED._value.get()
    celery_app.send_task(reconcile_quota.name)
    eventually(lambda: metrics.RECONCILE_RUNS._value.get() == runs + 1, timeout=20)

    assert int(runtime.redis.get(lowered_key)) == 6
    assert int(runtime.redis.get(counter_key(untouched.account.id, period))) == 2
    assert metrics.COUNTERS_REPAIRED._value.get() == repaired + 1
    assert metrics.CALLS_RESTORED._value.get() == restored + 4
    assert f"raised 1 counter(s) by 4 call(s) in all: {lowered.account.id} 2->6" in (
        task_log.getvalue()
    )
    # The next call sees the repaired count.
    assert client.get("/api/v1/account/quota", headers=lowered.auth).get_json()["used"] == 7

    # A second run finds nothing to repair, and says so.
    celery_app.send_task(reconcile_quota.name)
    eventually(lambda: metrics.RECONCILE_RUNS._value.get() == runs + 2, timeout=20)
    assert metrics.COUNTERS_REPAIRED._value.get() == repaired + 1
    assert "none behind" in task_log.getvalue()
