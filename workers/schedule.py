"""The beat schedule: every periodic task, with its explicit name and interval (UTC)."""

from __future__ import annotations

from celery.schedules import crontab

HEARTBEAT_INTERVAL_SECONDS = 15.0
RECONCILE_INTERVAL_SECONDS = 60.0

BEAT_SCHEDULE = {
    "analytics-forecast-all": {
        "task": "timo.analytics.forecast_all",
        # Nightly, just after the UTC day closes, so the forecast includes yesterday in full.
        "schedule": crontab(hour=0, minute=20),
        # A run missed by more than a few hours is superseded by on-demand forecasts anyway.
        "options": {"expires": 6 * 3600},
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
    "workers-heartbeat": {
        "task": "timo.workers.heartbeat",
        "schedule": HEARTBEAT_INTERVAL_SECONDS,
        # A heartbeat older than its interval says nothing new; drop it rather than queue it.
        "options": {"expires": HEARTBEAT_INTERVAL_SECONDS},
    },
}
