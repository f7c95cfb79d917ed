"""Entry point for the `celery` command (`celery -A workers.entry worker|beat`).

Like Flask's `make_celery.py`, this is the one module that builds an app when imported, because
the `celery` command needs an app object to load. It resolves the settings the same way the web
process does, so with no URLs set it joins the embedded servers under `TIMO_HOME`. With
`TIMO_WORKER_METRICS_PORT` set, the worker serves its Prometheus metrics on that port (on
127.0.0.1 unless `TIMO_WORKER_METRICS_ADDR` says otherwise).
"""

from timo_hub.platform import prometheus
from timo_hub.platform.settings import Settings

settings = Settings.from_env()
# Before anything imports prometheus-client: the worker's pool processes share this directory.
prometheus.use_multiprocess_directory(settings.home, "celery")

from timo_hub.platform.embedded import resolve_services  # noqa: E402
from workers.celery_app import create_celery_app  # noqa: E402

app = create_celery_app(resolve_services(settings))
