"""`timo-hub broker migrate`: an older Timo Hub's classic RabbitMQ queues become quorum queues."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner, Result
from kombu import Connection, Consumer, Exchange, Queue

from events.publisher import EVENTS_QUEUE, INGEST_TASK
from tests.support.events import log_counts, make_event
from tests.support.rabbitmq import RabbitMQNode, rabbitmq_node
from tests.support.waiting import eventually
from tests.support.worker import worker_process
from timo_hub.cli import cli
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

OLD_QUEUES = tuple(
    Queue(n, Exchange(n, type="direct"), routing_key=n) for n in ("celery", "events", "webhooks")
)


@pytest.mark.slow
@pytest.mark.own_servers
def test_an_older_versions_queues_are_migrated_with_their_messages(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    # Guards the upgrade: RabbitMQ refuses to declare a quorum queue over a classic one, so
    # without a migration every worker died at start on a PRECONDITION_FAILED traceback, again
    # at every restart; and a migration that dropped the queues would lose what they held.
    with rabbitmq_node(tmp_path / "rabbitmq") as node:
        own = settings.model_copy(update={"home": tmp_path / "home", "broker_url": node.url})
        account = uuid.uuid4()
        events = [make_event(account) for _ in range(300)]
        _publish_as_an_older_version(node.url, [events[i : i + 10] for i in range(0, 300, 10)])

        refused = tmp_path / "refused-worker.log"
        with worker_process(own, refused) as worker:
            assert worker.process.wait(timeout=60) == 78
        assert "run `timo-hub broker migrate`" in refused.read_text()

        # An older worker still consuming: the migration stops, keeping what it moved so far.
        with Connection(node.url) as older, Consumer(older, [OLD_QUEUES[1]], prefetch_count=1):
            stopped = _migrate(node)
        assert stopped.exit_code == 1
        assert "queue 'events' has consumers" in stopped.output

        resumed = _migrate(node)
        assert resumed.exit_code == 0, resumed.output
        assert "events: a quorum queue, with 30 message(s) kept" in resumed.output
        again = _migrate(node)
        assert again.exit_code == 0
        assert again.output.count("already a quorum queue") == 3
        types = node.ctl("list_queues", "name", "type", "--quiet", "--no-table-headers")
        ours = dict(line.split("\t") for line in types.splitlines() if "celery_delayed" not in line)
        assert ours == {"celery": "quorum", "events": "quorum", "webhooks": "quorum"}

        with worker_process(own, tmp_path / "worker.log"):
            eventually(lambda: sum(log_counts(runtime).values()) == 300, timeout=60)

        # A migration that died after declaring the new queue, before moving the messages back:
        # they wait in the holding queue, which no worker consumes, so none may start.
        with Connection(node.url) as conn:
            holding = Queue("webhooks.upgrading", queue_arguments={"x-queue-type": "quorum"})
            with conn.Producer() as producer:
                producer.publish("{}", routing_key=holding.name, declare=[holding])
        stranded = tmp_path / "stranded-worker.log"
        with worker_process(own, stranded) as worker:
            assert worker.process.wait(timeout=60) == 78
        assert "an interrupted `timo-hub broker migrate` left messages in" in stranded.read_text()


def _publish_as_an_older_version(broker_url: str, batches: list[list[object]]) -> None:
    """Declare the queues as versions before quorum queues did, and queue ingest tasks."""
    app = Celery("older", broker=broker_url, set_as_current=False)
    app.conf.update(task_queues=OLD_QUEUES, broker_transport_options={"confirm_publish": True})
    with app.producer_or_acquire() as producer:
        for batch in batches:
            lines = [event.to_json() for event in batch]  # type: ignore[attr-defined]
            app.send_task(INGEST_TASK, args=[lines], queue=EVENTS_QUEUE, producer=producer)


def _migrate(node: RabbitMQNode) -> Result:
    env = {"TIMO_ENV": "test", "TIMO_BROKER_URL": node.url}
    return CliRunner().invoke(cli, ["broker", "migrate"], env=env, catch_exceptions=False)
