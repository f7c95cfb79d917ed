"""The Celery application: configuration, the process's runtime, and pool lifecycle.

`create_celery_app(settings)` builds the app without touching the network. In a prefork worker the
PostgreSQL pool is opened lazily in each child after the fork (`timo_hub.platform.db`) and closed
when the child exits; nothing is shared across the fork.
"""

from __future__ import annotations

import logging
import math
import os
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_shutdown

from events.partitions import PartitionRegistry
from events.publisher import TASK_ROUTES, task_queues
from timo_hub.platform import broker_queues, prometheus
from timo_hub.platform.logs import configure_logging
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks.dispatch import DELIVERY_ROUTES, webhooks_queue
from workers.schedule import BEAT_SCHEDULE

logger = logging.getLogger(__name__)

TASK_MODULES = ["workers.tasks", "workers.webhook_tasks"]
# sysexits.h EX_CONFIG: what a process manager shows for "fix the configuration, then restart".
EXIT_CONFIGURATION = 78


class TimoCelery(Celery):
    """A Celery app that carries the process's `Runtime` (and partition cache) for its tasks."""

    runtime: Runtime
    partitions: PartitionRegistry
    whole_second_countdowns = False

    def send_task(
        self,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        countdown: float | None = None,
        *more: Any,
        **options: Any,
    ) -> Any:
        """Send a task (retries too); on RabbitMQ a countdown is rounded up to whole seconds.

        There Celery delays a task in the broker's delay queues (native delayed delivery), whose
        routing key counts whole seconds: it truncates a countdown, so a first ingest retry
        (0.5 s) raised "countdown must be a positive number" and its message was dropped, and a
        webhook retry due in 4.7 s arrived early, found nothing due and waited for the dispatch run.
        """
        if self.whole_second_countdowns:
            eta = options.get("eta")
            if isinstance(eta, datetime) and not more:
                # Celery turns an eta into a truncated countdown the same way: turn it into one
                # rounded up instead.
                del options["eta"]
                eta = eta if eta.tzinfo is not None else eta.replace(tzinfo=UTC)  # Celery: UTC
                countdown = max((eta - datetime.now(UTC)).total_seconds(), countdown or 0.0)
            if countdown is not None and countdown > 0:
                countdown = math.ceil(countdown)
        return super().send_task(name, args, kwargs, countdown, *more, **options)


def create_celery_app(settings: Settings) -> TimoCelery:
    """Build the Celery app for resolved `settings`."""
    configure_logging(settings)
    runtime = build_runtime(settings)
    broker_url = runtime.broker_url
    app = TimoCelery("timo", broker=broker_url, include=TASK_MODULES, set_as_current=True)
    app.runtime = runtime
    app.partitions = PartitionRegistry()
    app.whole_second_countdowns = broker_queues.uses_amqp(broker_url)
    app.conf.update(
        # Quorum queues on RabbitMQ (`timo_hub.platform.broker_queues`): Celery then consumes
        # with per-consumer prefetch (`worker_detect_quorum_queues`) and holds countdown tasks in
        # the broker's delay queues (native delayed delivery), not in the worker.
        task_queues=(*task_queues(broker_url), webhooks_queue(broker_url)),
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
        # Tasks the worker and beat send are confirmed and persistent on RabbitMQ. Redis hands an
        # unacknowledged message (its worker died) to another worker after `visibility_timeout`.
        # Batches take well under a second, a nightly forecast chunk starts no account after
        # 30 s (`timo_hub.usage.forecast_runs.CHUNK_SECONDS`) and retries are new messages, so a
        # minute makes redelivery prompt while never racing a task that is still running.
        **broker_queues.publishing_settings(broker_url, visibility_timeout=60),
        beat_schedule=BEAT_SCHEDULE,
        worker_hijack_root_logger=False,
    )
    return app


@worker_init.connect
@beat_init.connect
def _refuse_outdated_queues(sender: object = None, **_: object) -> None:
    """Exit with a clear message (not Celery's traceback, again at every restart) when RabbitMQ
    still holds an older Timo Hub's classic queues, which a quorum declaration cannot replace."""
    app = getattr(sender, "app", None)
    if not isinstance(app, TimoCelery):
        return
    advice = broker_queues.outdated_declaration(app.runtime.broker_url, app.amqp.queues.values())
    if advice is not None:
        logger.critical("cannot start: %s", advice)
        raise SystemExit(EXIT_CONFIGURATION)


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
