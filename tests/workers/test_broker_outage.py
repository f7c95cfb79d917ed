"""The broker goes away during traffic: calls keep their answers, events spool, then all arrive."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from api import close_app, create_app
from api.metering import EXTENSION
from events import pipeline_metrics
from tests.support.accounts import Customer, new_customer
from tests.support.events import log_counts, projection_counts
from tests.support.waiting import eventually
from tests.support.worker import worker_process
from timo_hub.platform.embedded import EmbeddedRedis
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings, broker_url_for_redis

pytestmark = pytest.mark.slow


@pytest.mark.embedded
def test_calls_survive_a_broker_outage_and_every_event_arrives(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    # Its own broker, so that stopping it leaves the quota's Redis (and so the API) running.
    broker = EmbeddedRedis(tmp_path / "broker")
    broker_url = broker_url_for_redis(broker.acquire())
    own = settings.model_copy(update={"home": tmp_path / "home", "broker_url": broker_url})
    app = create_app({"SETTINGS": own})
    client = app.test_client()
    customer = new_customer(runtime, plan="developer")
    spooled_before = pipeline_metrics.EVENTS_SPOOLED._value.get()
    replayed_before = pipeline_metrics.EVENTS_REPLAYED._value.get()
    try:
        for _ in range(40):
            assert client.get("/api/v1/account", headers=customer.auth).status_code == 200
        broker.stop()
        for _ in range(60):  # the broker is down: answers must not change
            assert client.get("/api/v1/account", headers=customer.auth).status_code == 200
        publisher = app.extensions[EXTENSION]
        eventually(
            lambda: pipeline_metrics.EVENTS_SPOOLED._value.get() > spooled_before, timeout=15
        )

        broker.acquire()
        with worker_process(own, tmp_path / "worker.log"):
            assert publisher.drain(timeout=60, verified=True)
            expected = 100
            eventually(lambda: _calls(log_counts(runtime), customer) == expected, timeout=60)
            assert _calls(projection_counts(runtime), customer) == expected
        assert pipeline_metrics.EVENTS_REPLAYED._value.get() > replayed_before
    finally:
        close_app(app)
        broker.release()


@pytest.mark.skipif(
    not os.environ.get("TIMO_TEST_BROKER_URL", "").startswith("amqp")
    or shutil.which("rabbitmqctl") is None,
    reason="needs the machine's RabbitMQ (TIMO_TEST_BROKER_URL=amqp://…) and rabbitmqctl",
)
def test_calls_survive_a_rabbitmq_outage_and_every_event_arrives(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    own = settings.model_copy(update={"home": tmp_path / "home"})
    app = create_app({"SETTINGS": own})
    client = app.test_client()
    customer = new_customer(runtime, plan="developer")
    try:
        for _ in range(40):
            assert client.get("/api/v1/account", headers=customer.auth).status_code == 200
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
        try:
            for _ in range(60):
                assert client.get("/api/v1/account", headers=customer.auth).status_code == 200
        finally:
            subprocess.run(
                ["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120
            )
        publisher = app.extensions[EXTENSION]
        with worker_process(own, tmp_path / "worker.log"):
            assert publisher.drain(timeout=90, verified=True)
            eventually(lambda: _calls(log_counts(runtime), customer) == 100, timeout=60)
            assert _calls(projection_counts(runtime), customer) == 100
    finally:
        close_app(app)


def _calls(counts: Counter[tuple[str, str]], customer: Customer) -> int:
    # Only this test's account: a broker shared with earlier tests may still hold their events.
    return sum(n for (account, _), n in counts.items() if account == str(customer.account.id))
