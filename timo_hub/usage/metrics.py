"""Metrics of the nightly forecast run (served by a worker's metrics endpoint).

The gauges describe the run a process last worked on or looked at, read from PostgreSQL after
every chunk task, `forecast_all` and sweep (`forecast_runs.publish_status`): progress can be read
from them alone, whichever worker process last wrote them (`mostrecent` adds up a worker's pool
processes by taking the latest value written). The counters count what this worker's processes
did since the worker started.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RUN_ACCOUNTS = Gauge(
    "timo_forecast_run_accounts",
    "Accounts of the latest nightly forecast run: done (forecast by it), failed, pending",
    ["state"],
    multiprocess_mode="mostrecent",
)
RUN_CHUNKS = Gauge(
    "timo_forecast_run_chunks",
    "Chunks of the latest nightly forecast run: done, in_progress (started), waiting",
    ["state"],
    multiprocess_mode="mostrecent",
)
RUN_STARTED = Gauge(
    "timo_forecast_run_started_timestamp_seconds",
    "When the latest nightly forecast run was planned (Unix time)",
    multiprocess_mode="mostrecent",
)
RUN_FINISHED = Gauge(
    "timo_forecast_run_finished_timestamp_seconds",
    "When the latest nightly forecast run finished (Unix time); 0 while it runs",
    multiprocess_mode="mostrecent",
)
ACCOUNTS_SETTLED = Counter(
    "timo_forecast_accounts",
    "Accounts settled by nightly forecast chunks: succeeded, failed, or skipped (already forecast "
    "by the run before an interruption)",
    ["outcome"],
)
CHUNK_EXECUTIONS = Counter(
    "timo_forecast_chunk_executions",
    "Executions of nightly forecast chunks, by how they ended: done, unfinished (the rest handed "
    "on), superseded (another execution took the chunk over), or nothing to do",
    ["result"],
)
