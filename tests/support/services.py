"""Real PostgreSQL, Redis and broker for the tests: the machine's when `TIMO_TEST_*` say so,
embedded servers otherwise."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from events.publisher import task_queues
from timo_hub.platform.broker_queues import upgrade_queues, uses_amqp
from timo_hub.platform.embedded import EmbeddedRedis, start_postgres
from timo_hub.platform.settings import broker_url_for_redis
from timo_hub.webhooks.dispatch import webhooks_queue


@dataclass(frozen=True)
class ServiceUrls:
    """Where the test servers are. `postgres_admin_url` may create and drop databases."""

    postgres_admin_url: str
    redis_url: str
    broker_url: str
    embedded_redis: EmbeddedRedis | None


def start_services(home: Path) -> ServiceUrls:
    """Use the `TIMO_TEST_*` servers, or start embedded ones under `home`."""
    admin_url = os.environ.get("TIMO_TEST_DATABASE_URL") or start_postgres(
        home / "postgres", database="postgres"
    )
    embedded_redis = None
    redis_url = os.environ.get("TIMO_TEST_REDIS_URL")
    if not redis_url:
        embedded_redis = EmbeddedRedis(home / "redis")
        redis_url = embedded_redis.acquire()
    broker_url = os.environ.get("TIMO_TEST_BROKER_URL") or broker_url_for_redis(redis_url)
    if uses_amqp(broker_url):
        # Earlier runs on this RabbitMQ (or an older Timo Hub) may have left classic queues of our
        # names, which a quorum declaration cannot replace: upgrade them as an operator would.
        upgrade_queues(broker_url, (*task_queues(broker_url), webhooks_queue(broker_url)))
    return ServiceUrls(admin_url, redis_url, broker_url, embedded_redis)


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server of `admin_url`."""
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


def recreate_database(admin_url: str, name: str) -> str:
    """Drop and create database `name`; return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever still uses it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new empty database for one test, dropped afterwards."""
    name = f"timo_scratch_{uuid.uuid4().hex[:12]}"
    url = recreate_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


TRUNCATE_ALL = """
SELECT format('TRUNCATE %s RESTART IDENTITY CASCADE', string_agg(format('%I', tablename), ', '))
FROM pg_tables
WHERE schemaname = 'public' AND tablename NOT IN ('plans', 'schema_migrations')
"""


def truncate_product_tables(url: str) -> None:
    """Empty every table but the seeded plans and the migration record."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(TRUNCATE_ALL).fetchone()
        if row and row[0]:
            conn.execute(row[0])
