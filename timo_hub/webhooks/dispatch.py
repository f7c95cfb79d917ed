"""Queueing deliveries for the workers: a Celery task per delivery, on the `webhooks` queue.

Sending is a shortcut, not the record: a delivery is due in PostgreSQL from the moment it is
stored, and the workers' dispatch run (every few seconds) queues whatever is due and not being
sent. So a process that dies between storing and queueing delays a delivery by seconds, never
loses it, and a message queued twice sends once (the second finds it claimed).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterable

from celery import Celery
from kombu.entity import Queue

from timo_hub.platform.broker_queues import (
    mismatch_advice,
    publishing_settings,
    task_queue,
    uses_amqp,
)

logger = logging.getLogger(__name__)

DELIVER_TASK = "timo.webhooks.deliver"
# Its own queue, so that an operator can give deliveries (which wait on customers' servers for
# up to 10 s) their own workers without touching ingestion.
WEBHOOKS_QUEUE_NAME = "webhooks"
DELIVERY_ROUTES = {DELIVER_TASK: {"queue": WEBHOOKS_QUEUE_NAME}}
SEND_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
BROKER_TIMEOUT_SECONDS = 2.0


def webhooks_queue(broker_url: str) -> Queue:
    """The `webhooks` queue as the broker of `broker_url` has it (a quorum queue on RabbitMQ)."""
    return task_queue(WEBHOOKS_QUEUE_NAME, broker_url)


class DeliveryQueue:
    """Queues delivery tasks from a process that runs no tasks itself (web, CLI).

    `send` only hands the ids to a background thread, which publishes them: a broker that is
    slow, down, or accepts connections and never answers must not hold the request that made
    the deliveries (a key's creation, its one showing of the secret), and the dispatch run
    sends whatever this thread could not.
    """

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url
        self._app: Celery | None = None
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def send(self, delivery_ids: Iterable[str]) -> None:
        """Queue each delivery soon (never blocks); failures are logged and left to the
        dispatch run."""
        ids = list(delivery_ids)
        if not ids:
            return
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # After a fork the parent's thread and connections are not ours.
                    self._pending = queue.SimpleQueue()
                    self._app = None
                    self._thread = threading.Thread(
                        target=self._run, name="timo-webhook-queue", daemon=True
                    )
                    self._thread.start()
                    self._pid = os.getpid()
        self._pending.put(ids)

    def close(self, timeout: float = 5.0) -> None:
        """Publish what was handed over (for up to `timeout` s) and release the connections."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._pending.put(None)
            thread.join(timeout)
        self._thread = None
        self._pid = None
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None

    def _run(self) -> None:
        while True:
            ids = self._pending.get()
            if ids is None:
                return
            self._publish(ids)

    def _publish(self, ids: list[str]) -> None:
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
                mismatch_advice(exc) or exc,
            )

    def _celery(self) -> Celery:
        with self._lock:
            if self._app is None:
                app = Celery("timo-webhooks", broker=self._broker_url, set_as_current=False)
                app.conf.update(
                    task_queues=(webhooks_queue(self._broker_url),),
                    task_routes=DELIVERY_ROUTES,
                    task_serializer="json",
                    **publishing_settings(self._broker_url, **_transport_options(self._broker_url)),
                    broker_connection_timeout=BROKER_TIMEOUT_SECONDS,
                    broker_connection_retry=False,
                )
                self._app = app
            return self._app


def _transport_options(broker_url: str) -> dict[str, object]:
    """Bounded waits on the broker: a connect timeout alone lets a broker that accepts and never
    answers hold the sender for ever."""
    options: dict[str, object] = {"max_retries": 1}
    if uses_amqp(broker_url):
        # The confirm of each message is waited for too (`publishing_settings`), this long.
        options.update(read_timeout=BROKER_TIMEOUT_SECONDS, write_timeout=BROKER_TIMEOUT_SECONDS)
    else:
        options.update(
            socket_timeout=BROKER_TIMEOUT_SECONDS, socket_connect_timeout=BROKER_TIMEOUT_SECONDS
        )
    return options
