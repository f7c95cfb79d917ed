"""Entry point for the `celery` command (`celery -A workers.entry worker|beat`).

Like Flask's `make_celery.py`, this is the one module that builds an app when imported, because
the `celery` command needs an app object to load. It resolves the settings the same way the web
process does, so with no URLs set it joins the embedded servers under `TIMO_HOME`. With
`TIMO_WORKER_METRICS_PORT` set, the worker serves its Prometheus metrics on that port (on
127.0.0.1 unless `TIMO_WORKER_METRICS_ADDR` says otherwise).
"""

import os

# One BLAS thread per process, as in the web process (`timo_hub.gunicorn_config`), set before
# anything imports numpy: a forecast's matrices are tiny, so OpenBLAS's default pool (a thread per
# core in every pool process) only spins, and cost the nightly run about twice the CPU per account;
# a worker runs one task per pool process, and more processes are the way to use more cores. The
# pool processes are forked from this one and inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from timo_hub.platform import prometheus
from timo_hub.platform.settings import Settings

settings = Settings.from_env()
# Before anything imports prometheus-client: the worker's pool processes share this directory.
prometheus.use_multiprocess_directory(settings.home, "celery")

from timo_hub.platform.embedded import resolve_services  # noqa: E402
from workers.celery_app import create_celery_app  # noqa: E402

app = create_celery_app(resolve_services(settings))
