"""The beat schedule: every periodic task, with its explicit name and interval (UTC)."""

from __future__ import annotations

HEARTBEAT_INTERVAL_SECONDS = 15.0

BEAT_SCHEDULE = {
    "events-maintain-partitions": {
        "task": "timo.events.maintain_partitions",
        # Hourly is plenty for monthly partitions and keeps a fresh deployment from waiting a day.
        "schedule": 3600.0,
    },
    "workers-heartbeat": {
        "task": "timo.workers.heartbeat",
        "schedule": HEARTBEAT_INTERVAL_SECONDS,
        # A heartbeat older than its interval says nothing new; drop it rather than queue it.
        "options": {"expires": HEARTBEAT_INTERVAL_SECONDS},
    },
}
