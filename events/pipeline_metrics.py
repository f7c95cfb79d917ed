"""Counters of the event pipeline (exposed to Prometheus by the metrics endpoint)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_PUBLISHED = Counter("timo_events_published", "Events handed to the broker by web processes")
EVENTS_SPOOLED = Counter(
    "timo_events_spooled", "Events held in the local spool because the broker refused them"
)
EVENTS_REPLAYED = Counter(
    "timo_events_replayed", "Spooled events published after a broker failure or process death"
)
PUBLISH_FAILURES = Counter("timo_event_publish_failures", "Failed attempts to publish a batch")
EVENTS_INGESTED = Counter("timo_events_ingested", "Events appended to the log by workers")
EVENTS_DUPLICATE = Counter("timo_events_duplicate", "Events ignored because already in the log")
EVENTS_DEAD_LETTERED = Counter("timo_events_dead_lettered", "Unreadable event payloads")
SPOOL_TORN_LINES = Counter(
    "timo_spool_torn_lines",
    "Unfinished last lines cut from a dead process's spool segment when it was adopted",
)
INGEST_LAG = Histogram(
    "timo_ingest_lag_seconds",
    "From the oldest event of a batch happening to the batch being committed",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
INGEST_BATCH_SIZE = Histogram(
    "timo_ingest_batch_size",
    "Events per ingested batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
