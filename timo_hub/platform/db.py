"""PostgreSQL access: one psycopg connection pool per process.

The pool is created on first use in the process that uses it, never at import time and never
inherited across `fork()` (gunicorn and Celery prefork workers would otherwise share sockets with
their parent). Every connection is checked when it leaves the pool, so after a PostgreSQL restart
the next request gets a fresh connection instead of an error: the process heals by itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = ["Database", "PoolTimeout"]


class Database:
    """A lazily opened, fork-aware connection pool for one database URL."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        name: str = "timo",
    ) -> None:
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._name = name
        self._pool: ConnectionPool | None = None
        self._pool_pid: int | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool:
        """This process's pool, opened on first access (again after a fork)."""
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                # A pool inherited through fork() belongs to the parent: drop it without closing,
                # closing would tear down the parent's connections.
                self._pool = ConnectionPool(
                    self.url,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=self._timeout,
                    name=self._name,
                    check=ConnectionPool.check_connection,
                    open=False,
                )
                self._pool.open(wait=False)
                self._pool_pid = os.getpid()
            return self._pool

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """Borrow a connection; the block's work is committed on success, rolled back on error."""
        with self.pool.connection(timeout=timeout) as conn:
            yield conn

    def close(self) -> None:
        """Close this process's pool (worker shutdown, tests)."""
        with self._lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None
            self._pool_pid = None
