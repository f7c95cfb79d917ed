"""RabbitMQ, the production broker: whatever it confirmed survives a `kill -9`, and arrives once.

Guards against a publish that returned (so its sender moved on) being lost when the broker
crashes: a task sent by a worker or beat without publisher confirms returned once its bytes were
in the socket, and a classic queue had not written it yet (on this machine a `kill -9` right after
3,000 such sends lost all of them); an event batch the web process shipped; and a countdown task
(a webhook retry), which on quorum queues waits in the broker's delay queues instead of in a
worker's memory. The events and tasks are sent by the product's own publishers (the web
process's `EventPublisher`, the worker's Celery app) to a private RabbitMQ node, which is killed
with SIGKILL and restarted on its data; a real worker then drains it into PostgreSQL.

What a single node cannot show: with confirms, a classic durable queue also keeps what it
confirmed through a `kill -9` (it confirms a persistent message once it is on disk). Quorum queues
are for the loss of a node (a disk, a machine): their messages are on a majority of nodes.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from events import pipeline_metrics
from events.model import ApiCallRecorded
from events.publisher import EVENTS_QUEUE, INGEST_TASK, EventPublisher, producer_app
from tests.support.events import log_counts, make_event, projection_counts
from tests.support.rabbitmq import RabbitMQNode, rabbitmq_cluster, rabbitmq_node
from tests.support.waiting import eventually
from tests.support.worker import worker_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks.dispatch import DeliveryQueue
from workers.celery_app import create_celery_app

ACCOUNTS = [uuid.uuid4() for _ in range(3)]
DELAYED_ACCOUNT = uuid.uuid4()
# Longer than a restart of the node and a worker's start, so the task is still waiting in the
# broker when it dies, and its delivery after the restart can be seen to wait for its time.
COUNTDOWN_SECONDS = 45


def test_every_publisher_confirms_into_quorum_queues_on_rabbitmq(settings: Settings) -> None:
    """The worker's and beat's app, the web's event publisher and its webhook queue all publish
    persistent, confirmed messages to durable quorum queues when the broker is RabbitMQ."""
    own = settings.model_copy(update={"broker_url": "amqp://guest:guest@127.0.0.1:1//"})
    worker_app = create_celery_app(own)
    try:
        apps = [worker_app, producer_app(own.broker_url or ""), _delivery_app(own.broker_url)]
        for app in apps:
            assert app.conf.broker_transport_options["confirm_publish"] is True
            assert app.conf.task_default_delivery_mode == "persistent"
            for queue in app.amqp.queues.values():
                assert queue.durable and queue.queue_arguments == {"x-queue-type": "quorum"}
                # Native delayed delivery (countdowns on quorum queues) cannot route via direct.
                assert queue.exchange.type == "topic"
        assert set(worker_app.amqp.queues) == {"celery", "events", "webhooks"}
    finally:
        worker_app.runtime.close()


def test_countdowns_on_rabbitmq_are_rounded_up_to_whole_seconds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards retries dropped or sent early: on RabbitMQ Celery delays a task in queues keyed by
    whole seconds and truncates its countdown, so a 0.5 s ingest retry raised ("countdown must be
    a positive number") and was dropped, and a 4.7 s one came at 4 s. Ours are rounded up, etas
    too; on Redis they are left alone."""
    sent: list[tuple[float | None, object]] = []

    def record(
        self: Celery,
        name: str,
        args: object = None,
        kwargs: object = None,
        countdown: float | None = None,
        *more: object,
        **options: object,
    ) -> None:
        sent.append((countdown, options.get("eta")))

    monkeypatch.setattr(Celery, "send_task", record)
    rabbit = create_celery_app(
        settings.model_copy(update={"broker_url": "amqp://g:g@127.0.0.1:1//"})
    )
    redis_app = create_celery_app(
        settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    )
    try:
        rabbit.send_task("t", countdown=0.5)
        rabbit.send_task("t", countdown=4.7)
        rabbit.send_task("t", countdown=3)
        rabbit.send_task("t", eta=datetime.now(UTC) + timedelta(seconds=0.4))
        redis_app.send_task("t", countdown=0.5)
    finally:
        rabbit.runtime.close()
        redis_app.runtime.close()
    assert sent == [(1, None), (5, None), (3, None), (1, None), (0.5, None)]


def test_the_redis_broker_keeps_its_queues(settings: Settings) -> None:
    """With Redis, queues are declared as before quorum queues (nothing for kombu's virtual
    transport to misread) and nothing asks for confirms."""
    url = "redis://127.0.0.1:1/0"
    for app in (producer_app(url), _delivery_app(url)):
        assert "confirm_publish" not in app.conf.broker_transport_options
        for queue in app.amqp.queues.values():
            assert not queue.queue_arguments
            assert queue.exchange.type == "direct"
            assert queue.routing_key == queue.name


@pytest.mark.slow
@pytest.mark.own_servers
def test_confirmed_publishes_survive_a_kill_9_of_rabbitmq_exactly_once(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    with rabbitmq_node(tmp_path / "rabbitmq") as node:
        own = settings.model_copy(update={"home": tmp_path / "home", "broker_url": node.url})
        # A worker declares the queues and native delayed delivery's exchanges as it starts,
        # then goes: what is published next waits in the broker alone.
        first_log = tmp_path / "first-worker.log"
        with worker_process(own, first_log):
            eventually(lambda: " ready." in first_log.read_text(), timeout=90)
        with Connection(node.url) as conn:
            conn.channel().exchange_declare("celery_delayed_27", "topic", passive=True)

        replayed_before = pipeline_metrics.EVENTS_REPLAYED._value.get()
        # The web process's way: spooled, then shipped in batches the broker confirmed.
        publisher = EventPublisher(
            tmp_path / "spool", node.url, runtime.database, reship_after=3600
        )
        shipped = _events(3000, days_ago=3)
        for event in shipped:
            publisher.publish(event)
        assert publisher.drain(timeout=60), "the broker did not confirm every batch"
        # A worker's or beat's way: one task per message, each send confirmed.
        app = create_celery_app(own)
        sent = _events(1000, days_ago=2)
        with app.producer_or_acquire() as producer:
            for i in range(0, len(sent), 20):
                lines = [e.to_json() for e in sent[i : i + 20]]
                app.send_task(
                    INGEST_TASK, args=[lines, f"task-{i}"], queue=EVENTS_QUEUE, producer=producer
                )
        # A countdown task, as a webhook retry is sent.
        delayed = [make_event(DELAYED_ACCOUNT) for _ in range(10)]
        delayed_at = time.monotonic()
        app.send_task(
            INGEST_TASK,
            args=[[e.to_json() for e in delayed], "delayed"],
            queue=EVENTS_QUEUE,
            countdown=COUNTDOWN_SECONDS,
        )

        node.kill()
        node.restart()

        try:
            with worker_process(own, tmp_path / "worker.log"):
                _wait_for(lambda: _rows_of(runtime, DELAYED_ACCOUNT) == len(delayed), 180)
                assert time.monotonic() >= delayed_at + COUNTDOWN_SECONDS, "ran before its time"
                everything = _expected(shipped + sent + delayed)
                _wait_for(lambda: log_counts(runtime) == everything, 90)
                assert projection_counts(runtime) == everything
                # Every batch the publisher shipped has its receipt, with nothing sent again.
                assert publisher.drain(timeout=30, verified=True)
            assert pipeline_metrics.EVENTS_REPLAYED._value.get() == replayed_before
            assert _rows(runtime) == (len(shipped) + len(sent) + len(delayed), 0)
        finally:
            publisher.close()
            app.runtime.close()


@pytest.mark.slow
@pytest.mark.own_servers
def test_a_quorum_queue_keeps_what_it_confirmed_when_its_leader_node_dies(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    """What a single node cannot show: a queue outliving the node that held it. A classic queue
    lives on one node: with that node gone it cannot be read at all (and with its disk, its
    messages are gone). The quorum `events` queue, led by the node that is killed, is read on
    another and every event arrives once."""
    with rabbitmq_cluster(tmp_path / "cluster", size=3) as (leader, survivor, _):
        on_survivor = settings.model_copy(
            update={"home": tmp_path / "home", "broker_url": survivor.url}
        )
        app = producer_app(leader.url)
        classic = Queue("classic-control", Exchange("classic-control", "direct"), "classic-control")
        with app.connection_for_write() as conn:
            # Declared through the node to be killed: it leads them (client-local placement).
            for queue in (*app.amqp.queues.values(), classic):
                queue(conn.default_channel).declare()
        assert _leader_of(survivor, "events") == leader.nodename
        first_log = tmp_path / "first-worker.log"
        with worker_process(on_survivor, first_log):  # the delay queues, on all three nodes
            eventually(lambda: " ready." in first_log.read_text(), timeout=90)

        events = _events(2000, days_ago=1)
        with app.producer_or_acquire() as producer:
            for i in range(0, len(events), 20):
                lines = [e.to_json() for e in events[i : i + 20]]
                app.send_task(INGEST_TASK, args=[lines], queue=EVENTS_QUEUE, producer=producer)
                producer.publish(lines, exchange=classic.exchange, routing_key="classic-control")

        leader.kill()

        with Connection(survivor.url) as conn, pytest.raises(conn.channel_errors) as gone:
            conn.channel().queue_declare("classic-control", passive=True)
        assert "down or inaccessible" in str(gone.value)
        with worker_process(on_survivor, tmp_path / "worker.log"):
            _wait_for(lambda: log_counts(runtime) == _expected(events), 120)
            assert projection_counts(runtime) == _expected(events)
        assert _rows(runtime) == (len(events), 0)
        assert _leader_of(survivor, "events") != leader.nodename


def _leader_of(node: RabbitMQNode, queue: str) -> str:
    """The node that leads quorum queue `queue`, as `node` sees it."""
    for line in node.ctl(
        "list_queues", "name", "leader", "--quiet", "--no-table-headers"
    ).splitlines():
        name, _, leader = line.partition("\t")
        if name == queue:
            return leader.strip()
    raise AssertionError(f"no queue {queue!r} on {node.nodename}")


def _delivery_app(broker_url: str | None) -> Celery:
    """The Celery app a web process's `DeliveryQueue` publishes webhook deliveries with."""
    return DeliveryQueue(broker_url or "")._celery()


def _events(count: int, *, days_ago: int) -> list[ApiCallRecorded]:
    start = datetime.now(UTC) - timedelta(days=days_ago)
    return [
        make_event(ACCOUNTS[i % 3], occurred_at=start + timedelta(seconds=7 * i))
        for i in range(count)
    ]


def _expected(events: list[ApiCallRecorded]) -> Counter[tuple[str, str]]:
    return Counter((str(e.account_id), e.occurred_at.date().isoformat()) for e in events)


def _rows_of(runtime: Runtime, account_id: uuid.UUID) -> int:
    with runtime.database.connection() as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE account_id = %s", (account_id,))
        found = row.fetchone()
    return int(found[0]) if found else 0


def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    """Poll `condition` four times a second (the worker shares the machine's two CPUs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.25)


def _rows(runtime: Runtime) -> tuple[int, int]:
    """Events in the log, and dead letters."""
    with runtime.database.connection() as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert events is not None and dead is not None
    return int(events[0]), int(dead[0])
