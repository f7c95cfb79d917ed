"""Fixtures: real PostgreSQL, Redis and Celery for every test that needs them.

The servers come from `TIMO_TEST_DATABASE_URL` / `TIMO_TEST_REDIS_URL` / `TIMO_TEST_BROKER_URL`
when set (CI's second run), else embedded ones started once per session. The product database is
created and migrated once per session and emptied before each test that uses it; Redis is flushed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from api import close_app, create_app
from tests.support import services
from tests.support.accounts import Customer, new_customer
from timo_hub.cli import cli
from timo_hub.platform import migrate
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from workers.celery_app import TimoCelery, create_celery_app

TEST_DATABASE = "timo_test"
TEST_PEPPER = "test-pepper-" + "x" * 32


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ServiceUrls]:
    """The servers this test session uses."""
    urls = services.start_services(tmp_path_factory.mktemp("services"))
    yield urls
    if urls.embedded_redis is not None:
        urls.embedded_redis.release()


@pytest.fixture(scope="session")
def database_url(service_urls: services.ServiceUrls) -> Iterator[str]:
    """A freshly created and migrated product database for this session."""
    url = services.recreate_database(service_urls.postgres_admin_url, TEST_DATABASE)
    migrate.migrate(url)
    yield url
    services.drop_database(service_urls.postgres_admin_url, TEST_DATABASE)


@pytest.fixture(scope="session")
def settings(
    database_url: str, service_urls: services.ServiceUrls, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings naming the test servers."""
    return Settings(
        env="test",
        home=tmp_path_factory.mktemp("home"),
        database_url=database_url,
        redis_url=service_urls.redis_url,
        broker_url=service_urls.broker_url,
        key_pepper=TEST_PEPPER,
        # Tests send webhooks to receivers on 127.0.0.1, and only there.
        webhooks_allow_private=True,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """Connections to the test servers, with the database and Redis emptied first."""
    services.truncate_product_tables(settings.database_url or "")
    runtime = build_runtime(settings)
    runtime.redis.flushdb()
    yield runtime
    runtime.close()


@pytest.fixture
def app(runtime: Runtime, settings: Settings, tmp_path: Path) -> Iterator[Flask]:
    """The Flask app on the test servers, with its own `TIMO_HOME` (so its own event spool)."""
    own_home = settings.model_copy(update={"home": tmp_path / "home"})
    app = create_app({"SETTINGS": own_home, "TESTING": True})
    yield app
    close_app(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of `app`."""
    return app.test_client()


@pytest.fixture
def celery_app(runtime: Runtime, settings: Settings) -> Iterator[TimoCelery]:
    """The Celery app on the test broker."""
    app = create_celery_app(settings)
    yield app
    app.runtime.close()


@pytest.fixture
def celery_worker(celery_app: TimoCelery) -> Iterator[object]:
    """A real Celery worker consuming the test broker in this process."""
    # With AMQP heartbeats on, the in-thread solo worker only notices the stop request at its
    # next heartbeat tick (about 10 s); production keeps heartbeats, the harness needs none.
    celery_app.conf.broker_heartbeat = 0
    # RabbitMQ keeps messages between tests: start from empty queues. A fresh connection, since
    # kombu's global pool may hold one that a broker restart (an outage test) has killed.
    with celery_app.connection() as conn:
        celery_app.control.purge(connection=conn)
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING") as w:
        yield w


@pytest.fixture
def customer(runtime: Runtime) -> Customer:
    """An account on the developer plan with one working key."""
    return new_customer(runtime)


@pytest.fixture
def run(settings: Settings, runtime: Runtime) -> Callable[..., Result]:
    """Invoke `timo-hub` in-process against the test servers."""
    env = {
        "TIMO_ENV": "test",
        "TIMO_HOME": str(settings.home),
        "TIMO_DATABASE_URL": settings.database_url,
        "TIMO_REDIS_URL": settings.redis_url,
        "TIMO_BROKER_URL": settings.broker_url,
        "TIMO_KEY_PEPPER": settings.key_pepper,
        "TIMO_SECRET_KEY": settings.secret_key,
    }

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return invoke
