"""A real worker consumes the real broker: the heartbeat task reaches health."""

from __future__ import annotations

import time

from flask.testing import FlaskClient

from workers.celery_app import TimoCelery
from workers.tasks import heartbeat


def test_worker_heartbeat_shows_in_health(
    celery_app: TimoCelery, celery_worker: object, client: FlaskClient
) -> None:
    assert client.get("/api/v1/health").get_json()["workers"]["last_heartbeat"] is None
    celery_app.send_task(heartbeat.name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = client.get("/api/v1/health").get_json()["workers"]
        if workers["last_heartbeat"] is not None:
            assert 0 <= workers["heartbeat_age_seconds"] < 20
            return
        time.sleep(0.1)
    raise AssertionError("the worker never ran the heartbeat task")
