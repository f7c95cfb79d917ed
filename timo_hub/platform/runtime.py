"""The connections one process uses, built from resolved settings, opened lazily.

A `Runtime` is what the Flask app and the Celery app each hold: the settings, the PostgreSQL pool,
the Redis client and the broker URL. Building one does no I/O, so it is safe in an app factory that
runs before gunicorn or Celery fork; each connection opens on first use in the process using it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kombu.connection import Connection

from timo_hub.platform.db import Database
from timo_hub.platform.redis_client import (
    SOCKET_TIMEOUT_SECONDS,
    AnyRedis,
    build_redis_client,
    close_client,
)
from timo_hub.platform.settings import Settings

REDIS_SOCKET_TIMEOUT = SOCKET_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Runtime:
    """Settings plus the process's lazily opened connections."""

    settings: Settings
    database: Database
    redis: AnyRedis
    """A single server's client, or a Redis Cluster's (`timo_hub.platform.redis_client`)."""
    broker_url: str

    def close(self) -> None:
        """Release the process's connections."""
        self.database.close()
        close_client(self.redis)


def build_runtime(settings: Settings) -> Runtime:
    """Build the runtime for settings whose service URLs are already resolved."""
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("build_runtime needs resolved settings (see timo_hub.platform.embedded)")
    return Runtime(
        settings=settings,
        database=Database(settings.database_url),
        redis=build_redis_client(settings.redis_url, cluster=settings.redis_cluster),
        broker_url=settings.effective_broker_url,
    )


def check_broker(url: str, timeout: float = 2.0) -> None:
    """Open and close a connection to the broker; raise if it cannot be reached in `timeout`."""
    options: dict[str, object] = {"max_retries": 0}
    if url.startswith(("redis://", "rediss://", "redis+socket://")):
        # A read timeout too: a Redis that accepts the connection and never answers would
        # otherwise hold the check forever.
        options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
