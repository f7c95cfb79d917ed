"""The nightly forecast job, end to end: beat's task on a real worker and broker."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from celery.beat import Scheduler
from celery.schedules import crontab

from tests.support.accounts import new_customer
from tests.support.events import seed_calls
from tests.support.waiting import eventually
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.usage import forecasts
from workers.celery_app import TimoCelery
from workers.tasks import (
    forecast_all,
    forecast_chunk,
    forecast_sweep,
    heartbeat,
    ingest_events,
    maintain_partitions,
    reconcile_quota,
    refresh_projections,
)
from workers.webhook_tasks import catch_up, deliver, dispatch_due, prune

# What beat must run, written out here rather than read from `workers.schedule`, so that an entry
# removed, renamed, pointed at another task or given another interval there fails this test.
# (entry name: task, when, options)
INTENDED_SCHEDULE = {
    # Nightly at 00:20 UTC, once the UTC day has closed; a run late by hours is dropped.
    "analytics-forecast-all": (forecast_all.name, crontab(minute=20, hour=0), {"expires": 21600}),
    # Chunks of today's nightly run whose messages were lost, queued again every five minutes
    # once the run has gone quiet; a late sweep gives way to the next.
    "analytics-forecast-sweep": (forecast_sweep.name, timedelta(minutes=5), {"expires": 300.0}),
    # Projections that moved during the day, every ten minutes; a late run gives way to the next.
    "analytics-refresh-projections": (
        refresh_projections.name,
        timedelta(minutes=10),
        {"expires": 600.0},
    ),
    # Partitions for the coming months, and retention's drops, hourly.
    "events-maintain-partitions": (maintain_partitions.name, timedelta(hours=1), {}),
    # Counters raised to what PostgreSQL proves, every minute (README: "each minute").
    "quota-reconcile": (reconcile_quota.name, timedelta(minutes=1), {"expires": 60.0}),
    # Webhook retries come due, and first sends that were lost are sent again, every 5 s.
    "webhooks-dispatch-due": (dispatch_due.name, timedelta(seconds=5), {"expires": 5.0}),
    # Quota events a killed web process noticed but did not record, every minute.
    "webhooks-catch-up": (catch_up.name, timedelta(minutes=1), {"expires": 60.0}),
    # Delivery logs past 90 days, notifications past 400, daily after the nightly forecasts.
    "webhooks-prune": (prune.name, crontab(minute=10, hour=2), {"expires": 21600}),
    # The liveness stamp health reports; a stale one is dropped, not queued.
    "workers-heartbeat": (heartbeat.name, timedelta(seconds=15), {"expires": 15.0}),
}
# Tasks that run on demand (a shipped batch, one chunk of the nightly run, one webhook
# delivery), never from beat.
ON_DEMAND_TASKS = {ingest_events.name, forecast_chunk.name, deliver.name}


def test_beat_schedules_every_periodic_task_at_its_interval(celery_app: TimoCelery) -> None:
    # The scheduler beat itself builds from the app's configuration (`beat_schedule` merged into
    # its entries), not the module's dict: an app that lost its `beat_schedule` fails here.
    entries = Scheduler(celery_app, lazy=True)
    entries.setup_schedule()
    schedule = entries.schedule
    assert set(schedule) == set(INTENDED_SCHEDULE)
    for name, (task, when, options) in INTENDED_SCHEDULE.items():
        entry = schedule[name]
        assert entry.task == task, name
        assert entry.task in celery_app.tasks, name  # a registered task, not a typo
        if isinstance(when, crontab):
            assert entry.schedule == when, name
        else:
            assert entry.schedule.run_every == when, name
        assert entry.options == options, name
    periodic = {task for task, _, _ in INTENDED_SCHEDULE.values()}
    product_tasks = {name for name in celery_app.tasks if name.startswith("timo.")}
    # Every task the product defines is either scheduled or known to run on demand.
    assert product_tasks - periodic == ON_DEMAND_TASKS


def test_beat_runs_in_utc(celery_app: TimoCelery) -> None:
    assert celery_app.conf.enable_utc is True
    assert celery_app.conf.timezone == "UTC"
    assert str(celery_app.timezone) == "UTC"
    # Behaviour, not only configuration: the nightly crontab, as beat evaluates it with this
    # app's time zone, is next due at 00:20 UTC. Under any other zone (e.g. Europe/Berlin, on the
    # night its clocks change) it would be due at another UTC hour. A copy, so that no other test
    # sees the fixed clock.
    entries = Scheduler(celery_app, lazy=True)
    entries.setup_schedule()
    nightly = copy.copy(entries.schedule["analytics-forecast-all"].schedule)
    last_run = datetime(2024, 3, 30, 0, 20, tzinfo=UTC)
    nightly.nowfun = lambda: datetime(2024, 3, 31, 0, 19, tzinfo=UTC)
    assert nightly.is_due(last_run) == (False, 60.0)
    nightly.nowfun = lambda: datetime(2024, 3, 31, 0, 20, tzinfo=UTC)
    assert nightly.is_due(last_run).is_due


def test_forecast_all_stores_a_forecast_per_active_account(
    runtime: Runtime, celery_app: TimoCelery, celery_worker: object
) -> None:
    heavy = new_customer(runtime, plan="free")
    quiet = new_customer(runtime)
    suspended = new_customer(runtime)
    service.set_status(runtime, suspended.account.id, "suspended")
    today = datetime.now(UTC).date()
    # 60 calls a day: this month is projected past the free plan's 1,000 calls, whatever the date.
    seed_calls(runtime, heavy.account.id, {today - timedelta(days=n): 60 for n in range(1, 31)})

    celery_app.send_task(forecast_all.name)

    def stored() -> dict:
        with runtime.database.connection() as conn:
            rows = conn.execute(
                "SELECT account_id, horizon_days, requested_model, generated_on FROM forecasts"
            ).fetchall()
        return {row[0]: row[1:] for row in rows}

    def alerts() -> set[str]:
        with runtime.database.connection() as conn:
            rows = conn.execute(
                "SELECT kind FROM usage_alerts WHERE account_id = %s", (heavy.account.id,)
            )
            return {row[0] for row in rows}

    eventually(lambda: len(stored()) == 2 and bool(alerts()), timeout=60)
    rows = stored()
    assert set(rows) == {heavy.account.id, quiet.account.id}
    assert all(row == (30, "auto", today) for row in rows.values())
    assert "projected_80_percent" in alerts()


def test_refresh_projections_announces_a_surge_on_a_worker(
    runtime: Runtime, celery_app: TimoCelery, celery_worker: object
) -> None:
    surging = new_customer(runtime, plan="free")
    now = datetime.now(UTC)
    today = now.date()
    seed_calls(runtime, surging.account.id, {today - timedelta(days=n): 10 for n in range(1, 31)})
    forecasts.run_nightly(runtime.database, surging.account.id, now)  # about 300 projected
    seed_calls(runtime, surging.account.id, {today: 900})  # then a surge, ingested

    celery_app.send_task(refresh_projections.name)

    def kinds() -> set[str]:
        with runtime.database.connection() as conn:
            rows = conn.execute(
                "SELECT kind FROM usage_alerts WHERE account_id = %s", (surging.account.id,)
            )
            return {row[0] for row in rows}

    eventually(lambda: "projected_exhaustion" in kinds(), timeout=60)
