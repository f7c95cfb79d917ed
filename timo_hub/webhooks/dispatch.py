"""Queueing deliveries for the workers: a Celery task per delivery, on the `webhooks` queue.

Sending is a shortcut, not the record: a delivery is due in PostgreSQL from the moment it is
stored, and the workers' dispatch run (every few seconds) queues whatever is due and not being
sent. So a process that dies between storing and queueing delays a delivery by seconds, never
loses it, and a message queued twice sends once (the second finds it claimed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from celery import Celery
from kombu.entity import Exchange, Queue

logger = logging.getLogger(__name__)

DELIVER_TASK = "timo.webhooks.deliver"
WEBHOOKS_QUEUE_NAME = "webhooks"
# Its own queue, so that an operator can give deliveries (which wait on customers' servers for
# up to 10 s) their own workers without touching ingestion.
WEBHOOKS_QUEUE = Queue(
    WEBHOOKS_QUEUE_NAME,
    Exchange(WEBHOOKS_QUEUE_NAME, type="direct"),
    routing_key=WEBHOOKS_QUEUE_NAME,
)
DELIVERY_ROUTES = {DELIVER_TASK: {"queue": WEBHOOKS_QUEUE_NAME}}
SEND_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


class DeliveryQueue:
    """Queues delivery tasks from a process that runs no tasks itself (web, CLI)."""

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url
        self._app: Celery | None = None
        self._lock = threading.Lock()

    def send(self, delivery_ids: Iterable[str]) -> None:
        """Queue each delivery now; on failure log it and leave it to the dispatch run."""
        ids = list(delivery_ids)
        if not ids:
            return
        try:
            app = self._celery()
            for delivery_id in ids:
                app.send_task(
                    DELIVER_TASK,
                    (delivery_id,),
                    queue=WEBHOOKS_QUEUE_NAME,
                    retry=True,
                    retry_policy=SEND_RETRY_POLICY,
                )
        except Exception as exc:
            logger.warning(
                "webhooks: could not queue %d delivery(ies), the dispatch run will: %s",
                len(ids),
                exc,
            )

    def close(self) -> None:
        """Release the broker connection pool."""
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None

    def _celery(self) -> Celery:
        with self._lock:
            if self._app is None:
                app = Celery("timo-webhooks", broker=self._broker_url, set_as_current=False)
                options: dict[str, object] = {"max_retries": 1}
                if self._broker_url.startswith(("amqp", "pyamqp")):
                    options["confirm_publish"] = True
                app.conf.update(
                    task_queues=(WEBHOOKS_QUEUE,),
                    task_routes=DELIVERY_ROUTES,
                    task_serializer="json",
                    broker_transport_options=options,
                    broker_connection_timeout=2,
                    broker_connection_retry=False,
                )
                self._app = app
            return self._app
