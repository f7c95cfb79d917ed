"""Webhooks with the product's real processes: gunicorn web processes and a prefork worker.

Thresholds fire exactly once under 1,100 concurrent calls spread over two servers of two
processes each; a worker killed (`kill -9`) mid-delivery neither loses nor duplicates it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.support.accounts import new_customer
from tests.support.web import web_process
from tests.support.webhook_receiver import PlannedAnswer, WebhookReceiver
from tests.support.worker import worker_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.webhooks import delivery, endpoints
from timo_hub.webhooks.dispatch import DeliveryQueue

pytestmark = pytest.mark.slow

CALLS = 1100
LIMIT = 1000


def test_thresholds_fire_exactly_once_under_1100_concurrent_calls(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    """Guards against every web process (or every call past the line) announcing a crossing:
    four processes see 50%, 80% and 100% go by, and the customer hears of each once."""
    customer = new_customer(runtime, plan="free", burst="unlimited")
    local = threading.local()
    with WebhookReceiver() as receiver:
        endpoint = endpoints.create(
            runtime.database,
            runtime.settings,
            customer.account.id,
            url=receiver.url,
            events=["quota.threshold_reached", "quota.exhausted"],
            description="",
            now=datetime.now(UTC),
        )
        answered_at: dict[int, float] = {}
        with (
            worker_process(settings, tmp_path / "worker.log"),
            web_process(settings, workers=2) as first,
            web_process(settings, workers=2) as second,
        ):
            bases = [first, second]

            def call(i: int) -> int:
                session = getattr(local, "session", None) or requests.Session()
                local.session = session
                response = session.get(
                    f"{bases[i % 2]}/api/v1/account/quota", headers=customer.auth, timeout=30
                )
                if response.status_code == 200:
                    used = LIMIT - int(response.headers["X-RateLimit-Remaining"])
                    answered_at[used] = time.time()
                return response.status_code

            with ThreadPoolExecutor(max_workers=24) as pool:
                statuses = Counter(pool.map(call, range(CALLS)))
            requests_seen = receiver.wait_for(4, timeout=30)
            time.sleep(2.0)  # a duplicate would have arrived by now
            requests_seen = receiver.requests

    assert statuses == {200: LIMIT, 429: CALLS - LIMIT}
    payloads = [Webhook(endpoint.secret).verify(r.body, r.headers) for r in requests_seen]
    kinds = sorted((p["type"], p["data"].get("threshold")) for p in payloads)
    assert kinds == [
        ("quota.exhausted", None),
        ("quota.threshold_reached", 50),
        ("quota.threshold_reached", 80),
        ("quota.threshold_reached", 100),
    ]
    assert len({r.headers["webhook-id"] for r in requests_seen}) == 4
    for request, payload in zip(requests_seen, payloads, strict=True):
        threshold = payload["data"].get("threshold")
        if threshold is not None:
            # Its first attempt came within 10 s of the call that crossed the line.
            crossed = answered_at[threshold * LIMIT // 100]
            assert request.arrived_wall - crossed < 10, threshold
    with runtime.database.connection() as conn:
        recorded = conn.execute(
            "SELECT count(*) FROM account_notifications WHERE account_id = %s",
            (customer.account.id,),
        ).fetchone()
    assert recorded == (4,)


def test_a_worker_killed_mid_delivery_neither_loses_nor_duplicates_it(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    """Guards against the logical delivery being lost (the killed task's message acknowledged
    with nothing recorded) or duplicated (a second delivery, or a second id) by `kill -9`."""
    customer = new_customer(runtime, plan="developer")
    queue = DeliveryQueue(settings.effective_broker_url)
    with WebhookReceiver() as receiver:
        receiver.plan(PlannedAnswer(200, delay=5.0))
        endpoint = endpoints.create(
            runtime.database,
            runtime.settings,
            customer.account.id,
            url=receiver.url,
            events=["key.created"],
            description="",
            now=datetime.now(UTC),
        )
        with worker_process(settings, tmp_path / "worker.log") as worker:
            sent = endpoints.send_test(
                runtime.database, customer.account.id, endpoint.id, datetime.now(UTC)
            )
            queue.send([sent.id])
            receiver.wait_for(1, timeout=30)  # the attempt is in flight, its answer held
            (child,) = worker.pool_children()
            child.send_signal(signal.SIGKILL)

            deadline = time.monotonic() + delivery.CLAIM_SECONDS + 30
            while time.monotonic() < deadline:
                # What beat's dispatch run does every few seconds.
                queue.send(delivery.due(runtime.database, datetime.now(UTC)))
                if _state(runtime, sent.id) == "succeeded":
                    break
                time.sleep(1.0)
        queue.close()
        seen = receiver.requests

    assert _state(runtime, sent.id) == "succeeded"
    assert [r.headers["webhook-id"] for r in seen] == [sent.id, sent.id]
    assert seen[0].body == seen[1].body
    record = endpoints.deliveries(runtime.database, customer.account.id, endpoint.id, limit=5)
    assert len(record) == 1  # one logical delivery
    assert [(a.attempt, a.status_code) for a in record[0].attempts] == [(1, None), (2, 200)]


def _state(runtime: Runtime, delivery_id: str) -> str:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT state FROM webhook_deliveries WHERE id = %s", (delivery_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])
