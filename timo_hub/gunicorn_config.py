"""gunicorn settings for the web process (`gunicorn --config python:timo_hub.gunicorn_config …`).

Metrics: the master picks a fresh Prometheus multiprocess directory under `$TIMO_HOME/metrics`
before anything imports prometheus-client, so every worker writes there and `/metrics` (served by
any worker) adds them all up; a worker that exits is marked dead.

The master imports the analytics stack (numpy, pandas, statsmodels: about two seconds of CPU)
once, before it forks its workers, so every worker starts with it already in memory (shared
copy-on-write) instead of each importing it at boot or on its first forecast. Nothing else is
built here: no app, no connections, no threads, so nothing unsafe crosses the fork.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
from typing import TYPE_CHECKING

from timo_hub.platform import prometheus
from timo_hub.platform.settings import Settings

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

prometheus.use_multiprocess_directory(Settings.from_env().home, "web")

# One BLAS thread per process: a web worker's matrices are tiny, and thread pools created before
# a fork are a classic source of trouble in the children.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import analytics.forecasting  # noqa: E402
import analytics.month_projection  # noqa: E402
import analytics.stats  # noqa: E402

PRELOADED = (analytics.forecasting, analytics.month_projection, analytics.stats)

# What was imported is never garbage: a full collection (one every few thousand requests) walked
# all of it, a pause of ~70 ms, and wrote to every object's header, copying the pages the workers
# share with the master. Frozen objects are left out of every collection.
gc.freeze()

# A request thread that needs the GIL while a background thread (the event shipper, the quota
# ledger's writer, the metrics flusher) runs Python code waits up to this long before the holder
# is asked to let go: at the default 5 ms, those waits were the metered request's p99.
sys.setswitchinterval(0.0005)

# Descriptors: the soft limit is often 1,024, and each event spool segment not yet confirmed
# holds up to two (a long broker outage piles them up; the spool refuses new calls before it
# runs out). Raise it towards the hard limit, as nginx's `worker_rlimit_nofile` or Go's runtime.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_wanted = 65_536 if _hard == resource.RLIM_INFINITY else min(_hard, 65_536)
if _soft != resource.RLIM_INFINITY and _soft < _wanted:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_wanted, _hard))

# gunicorn's maximum: query strings up to 8 KiB reach the app (and get its problem responses).
limit_request_line = 8190

# The sync worker, reading each request whole before the app sees it: a slow or stalled client
# holds a buffer, not a worker (timo_hub/serving/buffering_worker.py). `--worker-class` overrides.
worker_class = "timo_hub.serving.buffering_worker.BufferingWorker"


def post_worker_init(worker: Worker) -> None:
    """gunicorn hook: the worker has built its app; freeze that too (see `gc.freeze` above)."""
    gc.freeze()


def child_exit(server: Arbiter, worker: Worker) -> None:
    """gunicorn hook: a worker process is gone."""
    prometheus.process_exited(worker.pid)
