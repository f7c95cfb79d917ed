"""The Celery application: configuration, the process's runtime, and pool lifecycle.

`create_celery_app(settings)` builds the app without touching the network. In a prefork worker the
PostgreSQL pool is opened lazily in each child after the fork (`timo_hub.platform.db`) and closed
when the child exits; nothing is shared across the fork.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown

from events.partitions import PartitionRegistry
from events.publisher import TASK_QUEUES, TASK_ROUTES
from timo_hub.platform import prometheus
from timo_hub.platform.logs import configure_logging
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks.dispatch import DELIVERY_ROUTES, WEBHOOKS_QUEUE
from workers.schedule import BEAT_SCHEDULE

TASK_MODULES = ["workers.tasks", "workers.webhook_tasks"]


class TimoCelery(Celery):
    """A Celery app that carries the process's `Runtime` (and partition cache) for its tasks."""

    runtime: Runtime
    partitions: PartitionRegistry


def create_celery_app(settings: Settings) -> TimoCelery:
    """Build the Celery app for resolved `settings`."""
    configure_logging(settings)
    runtime = build_runtime(settings)
    app = TimoCelery("timo", broker=runtime.broker_url, include=TASK_MODULES, set_as_current=True)
    app.runtime = runtime
    app.partitions = PartitionRegistry()
    app.conf.update(
        task_queues=(*TASK_QUEUES, WEBHOOKS_QUEUE),
        task_routes={**TASK_ROUTES, **DELIVERY_ROUTES},
        timezone="UTC",
        enable_utc=True,
        task_serializer="json",
        accept_content=["json"],
        # Results are never read: tasks report through PostgreSQL and Redis.
        task_ignore_result=True,
        # Acknowledge after the work is done, and hand the message back if the worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # Redis hands an unacknowledged message (its worker died) to another worker after this
        # long. Batches take well under a second and retries are new messages, so a minute
        # makes redelivery prompt while never racing a task that is still running.
        broker_transport_options={"visibility_timeout": 60},
        beat_schedule=BEAT_SCHEDULE,
        worker_hijack_root_logger=False,
    )
    return app


@worker_process_shutdown.connect
def _close_connections(**_: object) -> None:
    from celery import current_app

    runtime = getattr(current_app, "runtime", None)
    if runtime is not None:
        runtime.close()
    prometheus.process_exited(os.getpid())


@worker_init.connect
def _serve_metrics(sender: object = None, **_: object) -> None:
    """With `TIMO_WORKER_METRICS_PORT`, serve every pool process's metrics from the main one."""
    app = getattr(sender, "app", None)
    runtime: Runtime | None = getattr(app, "runtime", None)
    port = None if runtime is None else runtime.settings.worker_metrics_port
    if runtime is None or port is None:
        return
    from prometheus_client import start_http_server

    address = runtime.settings.worker_metrics_addr
    registry = prometheus.server_registry()
    if registry is None:
        start_http_server(port, addr=address)
    else:
        start_http_server(port, addr=address, registry=registry)
