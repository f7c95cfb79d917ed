"""The beat schedule: every periodic task, with its explicit name and interval (UTC)."""

from __future__ import annotations

from celery.schedules import crontab

HEARTBEAT_INTERVAL_SECONDS = 15.0
RECONCILE_INTERVAL_SECONDS = 60.0
PROJECTION_REFRESH_INTERVAL_SECONDS = 600.0
WEBHOOK_DISPATCH_INTERVAL_SECONDS = 5.0
FORECAST_SWEEP_INTERVAL_SECONDS = 300.0

BEAT_SCHEDULE = {
    "analytics-forecast-all": {
        "task": "timo.analytics.forecast_all",
        # Nightly, just after the UTC day closes, so the forecast includes yesterday in full.
        "schedule": crontab(hour=0, minute=20),
        # A run missed by more than a few hours is superseded by on-demand forecasts anyway.
        "options": {"expires": 6 * 3600},
    },
    "analytics-forecast-sweep": {
        "task": "timo.analytics.forecast_sweep",
        # Chunks of today's nightly run whose task messages were lost (`forecast_runs`: "Sweep")
        # are queued again once the run has gone quiet; a run costs a few indexed queries, and
        # one once today's run is finished.
        "schedule": FORECAST_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": FORECAST_SWEEP_INTERVAL_SECONDS},
    },
    "analytics-refresh-projections": {
        "task": "timo.analytics.refresh_projections",
        # During the day: accounts running ahead of their forecast's band, or past half their
        # quota with a forecast over an hour old, so a projected exhaustion is announced the day it
        # becomes likely. Picking them is one query; a run not started within its interval is
        # superseded by the next.
        "schedule": PROJECTION_REFRESH_INTERVAL_SECONDS,
        "options": {"expires": PROJECTION_REFRESH_INTERVAL_SECONDS},
    },
    "events-maintain-partitions": {
        "task": "timo.events.maintain_partitions",
        # Hourly is plenty for monthly partitions and keeps a fresh deployment from waiting a day.
        "schedule": 3600.0,
    },
    "quota-reconcile": {
        "task": "timo.quota.reconcile",
        # Every minute: a counter lowered within one Redis server life (an operator's SET, a
        # bug) over-admits for at most a minute; a run costs one grouped read of the month's
        # usage and one pipelined read per 500 accounts. Restarts, failovers and lost counters
        # do not wait for this: the next call rebuilds them exactly.
        "schedule": RECONCILE_INTERVAL_SECONDS,
        "options": {"expires": RECONCILE_INTERVAL_SECONDS},
    },
    "webhooks-dispatch-due": {
        "task": "timo.webhooks.dispatch_due",
        # Retries come due here, and deliveries whose first send was lost (the web process or a
        # worker died before queueing or finishing it) are sent again; a run is one indexed query.
        "schedule": WEBHOOK_DISPATCH_INTERVAL_SECONDS,
        "options": {"expires": WEBHOOK_DISPATCH_INTERVAL_SECONDS},
    },
    "webhooks-catch-up": {
        "task": "timo.webhooks.catch_up",
        # The backstop of the quota events noticed at admission: a web process killed between
        # noticing a threshold and recording it leaves it to this run (one grouped query).
        "schedule": RECONCILE_INTERVAL_SECONDS,
        "options": {"expires": RECONCILE_INTERVAL_SECONDS},
    },
    "webhooks-prune": {
        "task": "timo.webhooks.prune",
        # Daily, in the quiet hour after the nightly forecasts; deletes in small batches.
        "schedule": crontab(hour=2, minute=10),
        "options": {"expires": 6 * 3600},
    },
    "workers-heartbeat": {
        "task": "timo.workers.heartbeat",
        "schedule": HEARTBEAT_INTERVAL_SECONDS,
        # A heartbeat older than its interval says nothing new; drop it rather than queue it.
        "options": {"expires": HEARTBEAT_INTERVAL_SECONDS},
    },
}
