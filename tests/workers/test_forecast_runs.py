"""The nightly forecast run in chunks: planning, chunk executions, the sweep, on a real worker.

The plain functions (`timo_hub.usage.forecast_runs`) are called directly; the tasks run on a real
worker (in this process) against the real broker. Killing a worker mid-run is in
`test_forecast_run_kill.py`.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from celery.signals import before_task_publish, task_prerun
from prometheus_client import REGISTRY

from tests.support.accounts import new_customer
from tests.support.events import seed_calls
from tests.support.waiting import eventually
from tests.support.web import settings_environment
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.usage import forecast_runs
from workers.celery_app import TimoCelery, create_celery_app
from workers.tasks import forecast_all, forecast_chunk, forecast_sweep

CHUNK_SIZE = 3


@pytest.fixture
def celery_app(runtime: Runtime, settings: Settings) -> Iterator[TimoCelery]:
    """The Celery app on the test broker, planning runs in chunks of `CHUNK_SIZE` accounts."""
    app = create_celery_app(settings.model_copy(update={"forecast_chunk_size": CHUNK_SIZE}))
    yield app
    with app.connection() as conn:  # what a test queued and no worker took
        app.control.purge(connection=conn)
    app.runtime.close()


def active_accounts(runtime: Runtime, count: int, *, suspended: int = 0) -> list[uuid.UUID]:
    """`count` active accounts (some with a short history) and `suspended` others; the active
    ones' ids, sorted."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    ids = []
    for n in range(count):
        customer = new_customer(runtime)
        if n % 3 == 0:
            seed_calls(
                runtime, customer.account.id, {yesterday - timedelta(days=d): 5 for d in range(5)}
            )
        ids.append(customer.account.id)
    for _ in range(suspended):
        service.set_status(runtime, new_customer(runtime).account.id, "suspended")
    return sorted(ids)


def stored(runtime: Runtime, day: date) -> dict[uuid.UUID, tuple[datetime, str]]:
    """The day's default forecasts: account -> (generated_at, the row version's xmin)."""
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT account_id, generated_at, xmin::text FROM forecasts "
            "WHERE generated_on = %s AND horizon_days = 30 AND requested_model = 'auto'",
            (day,),
        ).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def chunk_rows(runtime: Runtime, run_id: int) -> list[tuple[Any, ...]]:
    """(chunk, account ids, settled, succeeded, failed, skipped, attempts, done) per chunk."""
    with runtime.database.connection() as conn:
        return conn.execute(
            "SELECT chunk, account_ids, settled, succeeded, failed, skipped, attempts, "
            "done_at IS NOT NULL FROM forecast_run_chunks WHERE run_id = %s ORDER BY chunk",
            (run_id,),
        ).fetchall()


def finished(runtime: Runtime, day: date) -> bool:
    """Whether the run of `day` is marked finished."""
    run = forecast_runs.find(runtime.database, day)
    return run is not None and run.finished_at is not None


def test_a_run_splits_the_active_accounts_into_chunks_in_id_order(runtime: Runtime) -> None:
    ids = active_accounts(runtime, 7, suspended=2)
    now = datetime.now(UTC)

    run = forecast_runs.plan(runtime.database, now, chunk_size=CHUNK_SIZE)

    assert (run.for_day, run.accounts, run.chunks, run.chunk_size) == (now.date(), 7, 3, 3)
    assert run.finished_at is None
    rows = chunk_rows(runtime, run.id)
    assert [row[1] for row in rows] == [ids[0:3], ids[3:6], ids[6:7]]
    assert all(row[2:] == (0, 0, 0, 0, 0, False) for row in rows)


def test_a_day_without_active_accounts_is_finished_when_planned(runtime: Runtime) -> None:
    active_accounts(runtime, 0, suspended=1)
    run = forecast_runs.plan(runtime.database, datetime.now(UTC))
    assert (run.accounts, run.chunks) == (0, 0)
    assert run.finished_at == run.started_at


def test_planning_a_day_again_finds_its_run(runtime: Runtime) -> None:
    """Beat firing twice at once, or `forecast_all` redelivered: one run, its chunks once."""
    active_accounts(runtime, 7)
    now = datetime.now(UTC)
    start = threading.Barrier(4)
    runs: list[forecast_runs.Run] = []

    def planner() -> None:
        start.wait()
        runs.append(forecast_runs.plan(runtime.database, now, chunk_size=CHUNK_SIZE))

    threads = [threading.Thread(target=planner) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    new_customer(runtime)  # after planning: not in today's run
    later = forecast_runs.plan(runtime.database, now + timedelta(hours=3), chunk_size=2)

    assert len({run.id for run in runs}) == 1
    assert later == runs[0]
    assert (later.accounts, later.chunks, later.chunk_size) == (7, 3, CHUNK_SIZE)
    assert len(chunk_rows(runtime, later.id)) == 3


def test_forecast_all_twice_queues_each_chunk_once(
    runtime: Runtime, celery_app: TimoCelery
) -> None:
    active_accounts(runtime, 7)
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def note(sender: str, body: Any, **_: Any) -> None:
        sent.append((sender, tuple(body[0])))

    before_task_publish.connect(note)
    try:
        first = forecast_all()
        second = forecast_all()
    finally:
        before_task_publish.disconnect(note)

    run_id = first["run"]
    assert second["run"] == run_id
    assert (first["queued"], second["queued"]) == (3, 0)
    assert sent == [(forecast_chunk.name, (run_id, chunk)) for chunk in range(3)]


def test_every_chunk_runs_once_on_a_worker_and_forecasts_each_account_once(
    runtime: Runtime, celery_app: TimoCelery, celery_worker: object
) -> None:
    ids = active_accounts(runtime, 7, suspended=1)
    executed: list[tuple[Any, ...]] = []

    def note(sender: Any, args: Any, **_: Any) -> None:
        if sender.name == forecast_chunk.name:
            executed.append(tuple(args))

    task_prerun.connect(note)
    try:
        celery_app.send_task(forecast_all.name)
        today = datetime.now(UTC).date()
        eventually(lambda: finished(runtime, today), timeout=120)
    finally:
        task_prerun.disconnect(note)

    run = forecast_runs.find(runtime.database, today)
    assert run is not None
    expected_chunks = math.ceil(len(ids) / CHUNK_SIZE)
    assert sorted(executed) == [(run.id, chunk) for chunk in range(expected_chunks)]
    rows = chunk_rows(runtime, run.id)
    # Each account computed exactly once: by its chunk's one execution, none skipped.
    assert [(row[3], row[4], row[5], row[6]) for row in rows] == [
        (3, 0, 0, 1),
        (3, 0, 0, 1),
        (1, 0, 0, 1),
    ]
    forecasts = stored(runtime, today)
    assert set(forecasts) == set(ids)
    assert all(generated_at >= run.started_at for generated_at, _ in forecasts.values())


def test_a_chunk_past_its_time_budget_hands_the_rest_on(runtime: Runtime) -> None:
    ids = active_accounts(runtime, 6)
    run = forecast_runs.plan(runtime.database, datetime.now(UTC), chunk_size=6)
    ticks = iter(range(10_000))

    def clock() -> float:  # a second per look: the budget runs out after a few accounts
        return float(next(ticks))

    first = forecast_runs.run_chunk(runtime.database, run.id, 0, budget_seconds=4, clock=clock)
    assert first.state == "unfinished"
    assert 0 < first.succeeded < 6
    before = stored(runtime, run.for_day)
    assert len(before) == first.succeeded

    rest = forecast_runs.run_chunk(runtime.database, run.id, 0)

    assert rest.state == "done"
    assert (rest.succeeded, rest.skipped) == (6 - first.succeeded, 0)
    after = stored(runtime, run.for_day)
    assert set(after) == set(ids)
    assert {account: after[account] for account in before} == before  # none redone
    assert chunk_rows(runtime, run.id)[0][2:] == (6, 6, 0, 0, 2, True)
    assert finished(runtime, run.for_day)


def test_a_copy_of_a_running_chunk_takes_it_over(runtime: Runtime) -> None:
    """A redelivered or re-queued copy claims the chunk; the older execution stops, and every
    account is counted once, by one of them."""
    active_accounts(runtime, 5)
    run = forecast_runs.plan(runtime.database, datetime.now(UTC), chunk_size=5)
    copy: list[forecast_runs.ChunkOutcome] = []

    def first_done(account_id: uuid.UUID, outcome: object) -> None:
        if not copy:  # the copy starts while the first execution is under way
            copy.append(forecast_runs.run_chunk(runtime.database, run.id, 0))

    older = forecast_runs.run_chunk(runtime.database, run.id, 0, on_done=first_done)

    assert older.state == "superseded"
    assert (older.succeeded, older.failed, older.skipped) == (0, 0, 0)
    newer = copy[0]
    assert newer.state == "done"
    assert newer.skipped >= 1  # what the older one had stored when the copy started
    assert newer.succeeded + newer.skipped == 5
    settled, succeeded, failed, skipped, attempts, done = chunk_rows(runtime, run.id)[0][2:]
    assert (settled, succeeded + skipped, failed, attempts, done) == (5, 5, 0, 2, True)
    assert len(stored(runtime, run.for_day)) == 5


def test_a_chunk_of_a_day_gone_by_is_left_alone(runtime: Runtime) -> None:
    active_accounts(runtime, 2)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    run = forecast_runs.plan(runtime.database, yesterday)
    outcome = forecast_runs.run_chunk(runtime.database, run.id, 0)
    assert outcome.state == "expired"
    assert stored(runtime, run.for_day) == {}
    assert forecast_runs.run_chunk(runtime.database, run.id + 1, 0).state == "gone"


def test_runs_are_kept_as_long_as_their_forecasts(runtime: Runtime) -> None:
    active_accounts(runtime, 1)
    now = datetime.now(UTC)
    kept = forecast_runs.RUN_RETENTION_DAYS
    old = forecast_runs.plan(runtime.database, now - timedelta(days=kept + 1))
    recent = forecast_runs.plan(runtime.database, now - timedelta(days=kept))

    assert forecast_runs.prune(runtime.database, now.date()) == 1

    assert forecast_runs.find(runtime.database, old.for_day) is None
    assert forecast_runs.find(runtime.database, recent.for_day) == recent
    assert chunk_rows(runtime, old.id) == []


def test_the_sweep_names_the_chunks_of_a_quiet_run(runtime: Runtime) -> None:
    active_accounts(runtime, 7)
    now = datetime.now(UTC)
    run = forecast_runs.plan(runtime.database, now, chunk_size=CHUNK_SIZE)
    quiet = forecast_runs.QUIET_AFTER

    # Never queued (`forecast_all` died after planning): queued at once.
    assert forecast_runs.chunks_to_queue(runtime.database, run.id, now) == [0, 1, 2]
    forecast_runs.mark_queued(runtime.database, run.id, [0, 1, 2], now)
    assert forecast_runs.chunks_to_queue(runtime.database, run.id, now) == []
    # Queued and waiting behind a long queue, or under way: left alone while the run moves.
    forecast_runs.run_chunk(runtime.database, run.id, 1)
    moving = datetime.now(UTC) + quiet - timedelta(seconds=30)
    assert forecast_runs.chunks_to_queue(runtime.database, run.id, moving) == []
    # Nothing claimed, checkpointed or queued for `QUIET_AFTER`: the unfinished chunks have no
    # live message left.
    quiet_now = datetime.now(UTC) + quiet + timedelta(seconds=1)
    assert forecast_runs.chunks_to_queue(runtime.database, run.id, quiet_now) == [0, 2]
    forecast_runs.mark_queued(runtime.database, run.id, [0, 2], quiet_now)
    assert forecast_runs.chunks_to_queue(runtime.database, run.id, quiet_now) == []


def test_the_sweep_task_queues_the_chunks_a_killed_forecast_all_did_not(
    runtime: Runtime, celery_app: TimoCelery, celery_worker: object
) -> None:
    ids = active_accounts(runtime, 4)
    today = datetime.now(UTC).date()
    forecast_runs.plan(runtime.database, datetime.now(UTC), chunk_size=CHUNK_SIZE)  # never queued

    celery_app.send_task(forecast_sweep.name)

    eventually(lambda: finished(runtime, today), timeout=120)
    assert set(stored(runtime, today)) == set(ids)


def test_the_run_gauges_show_its_progress(runtime: Runtime) -> None:
    active_accounts(runtime, 5)
    run = forecast_runs.plan(runtime.database, datetime.now(UTC), chunk_size=2)
    forecast_runs.run_chunk(runtime.database, run.id, 0)

    status = forecast_runs.publish_status(runtime.database, run.for_day)

    def gauge(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert status is not None and (status.done, status.pending) == (2, 3)
    assert gauge("timo_forecast_run_accounts", state="done") == 2
    assert gauge("timo_forecast_run_accounts", state="failed") == 0
    assert gauge("timo_forecast_run_accounts", state="pending") == 3
    assert gauge("timo_forecast_run_chunks", state="done") == 1
    assert gauge("timo_forecast_run_chunks", state="waiting") == 2
    assert gauge("timo_forecast_run_started_timestamp_seconds") == run.started_at.timestamp()
    assert gauge("timo_forecast_run_finished_timestamp_seconds") == 0


BLAS_THREADS = """
import ctypes, glob, os
import workers.entry  # as `celery -A workers.entry` does, before any task imports numpy
import numpy
(library,) = glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "*openblas*"))
print(ctypes.CDLL(library).scipy_openblas_get_num_threads64_())
"""


def test_worker_processes_run_one_blas_thread(settings: Settings) -> None:
    """Without it OpenBLAS starts a thread per core in every pool process, and the nightly run
    costs about twice the CPU per account."""
    environment = {
        key: value
        for key, value in settings_environment(settings).items()
        if key not in {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}
    }
    result = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"
