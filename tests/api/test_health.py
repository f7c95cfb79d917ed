"""`GET /api/v1/health`: up, each dependency down, and healing after connections die."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient

from api import close_app, create_app
from tests.support.redis_server import RedisServer
from timo_hub.platform.settings import Settings

# Nothing listens on port 1: connecting is refused at once, a real "server down".
CLOSED_POSTGRES = "postgresql://postgres@127.0.0.1:1/timo?connect_timeout=1"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1//"


def test_health_is_ok_when_every_dependency_answers(client: FlaskClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["version"] == "1.0.0"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "postgresql": "up",
        "redis": "up",
        "broker": "up",
    }
    assert response.headers["Cache-Control"] == "no-store"
    assert "X-RateLimit-Limit" not in response.headers


def _health_with(settings: Settings, **broken: str) -> tuple[int, dict]:
    app = create_app({"SETTINGS": settings.model_copy(update=broken)})
    try:
        response = app.test_client().get("/api/v1/health")
        return response.status_code, response.get_json()
    finally:
        close_app(app)


def test_postgres_down_is_503_degraded(runtime: object, settings: Settings) -> None:
    status, body = _health_with(settings, database_url=CLOSED_POSTGRES)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["postgresql"]["status"] == "down"
    assert body["checks"]["redis"]["status"] == "up"


def test_redis_down_is_503_degraded(runtime: object, settings: Settings) -> None:
    status, body = _health_with(settings, redis_url=CLOSED_REDIS, broker_url=settings.broker_url)
    assert status == 503
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["postgresql"]["status"] == "up"


def test_broker_down_is_503_degraded(runtime: object, settings: Settings) -> None:
    status, body = _health_with(settings, broker_url=CLOSED_BROKER)
    assert status == 503
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["redis"]["status"] == "up"
    # Details stay in the log: the public answer names the failure, not hosts or credentials.
    assert "127.0.0.1" not in str(body)


def test_pool_heals_after_the_server_drops_every_connection(
    client: FlaskClient, settings: Settings
) -> None:
    assert client.get("/api/v1/health").status_code == 200
    # What a PostgreSQL restart does to a client: every pooled connection is cut.
    with psycopg.connect(settings.database_url or "", autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    for _ in range(3):
        response = client.get("/api/v1/health")
        assert response.status_code == 200, response.get_json()


@pytest.mark.slow
def test_a_stalled_redis_is_reported_within_3_seconds(
    runtime: object, settings: Settings, tmp_path: Path
) -> None:
    # Guards the defect where a Redis that accepts connections and never answers (SIGSTOP, a
    # full network buffer) made /health wait 30 s on the broker check, which had no read
    # timeout, until gunicorn killed the worker: the one endpoint meant to say "degraded" hung.
    server = RedisServer(tmp_path / "redis")
    server.start()
    app = create_app(
        {
            "SETTINGS": settings.model_copy(
                update={"redis_url": server.url, "broker_url": server.url, "home": tmp_path}
            )
        }
    )
    try:
        assert app.test_client().get("/api/v1/health").status_code == 200
        server.pause()
        for _ in range(2):  # and again while the first probes may still be waiting
            started = time.monotonic()
            response = app.test_client().get("/api/v1/health")
            assert time.monotonic() - started < 3.0
            assert response.status_code == 503
            checks = response.get_json()["checks"]
            assert checks["redis"]["status"] == checks["broker"]["status"] == "down"
            assert checks["postgresql"]["status"] == "up"
        server.resume()
    finally:
        server.kill()
        close_app(app)
