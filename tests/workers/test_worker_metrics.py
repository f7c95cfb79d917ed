"""A worker's Prometheus metrics: every pool process's counts, served by the main process."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from events.publisher import EVENTS_QUEUE, INGEST_TASK, producer_app
from tests.api.test_metrics import sample
from tests.support.events import log_counts, make_event
from tests.support.processes import free_port
from tests.support.waiting import eventually
from tests.support.worker import worker_process
from tests.workers.test_ingest_faults import _purge
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings


@pytest.mark.slow
def test_worker_serves_ingest_metrics_of_all_its_processes(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    _purge(settings)
    account = uuid.uuid4()
    batches = [[make_event(account).to_json() for _ in range(50)] for _ in range(6)]
    duplicate = batches[0][:10]
    app = producer_app(settings.effective_broker_url)
    with app.producer_or_acquire() as producer:
        for lines in [*batches, duplicate]:
            app.send_task(INGEST_TASK, args=[lines], queue=EVENTS_QUEUE, producer=producer)
    port = free_port()
    env = {"TIMO_WORKER_METRICS_PORT": str(port)}
    with worker_process(settings, tmp_path / "worker.log", concurrency=2, env=env):
        eventually(lambda: sum(log_counts(runtime).values()) == 300, timeout=60)

        def scraped() -> str:
            try:
                return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.ConnectionError:
                return ""

        eventually(lambda: sample(scraped(), "timo_events_duplicate_total") == 10, timeout=30)
        text = scraped()
    assert sample(text, "timo_events_ingested_total") == 300
    assert sample(text, "timo_ingest_batch_size_count") == 7
    assert sample(text, "timo_ingest_lag_seconds_count") >= 6
