"""Embedded PostgreSQL for development and tests, from the `pgserver` wheel.

pgserver keeps a list of the processes holding the server on disk and stops the server when the
last of them exits, so `timo-hub dev` and a `timo-hub accounts create` in a second terminal share
one server whichever started first. This module adds two things pgserver lacks: a dedicated
database for the product, and pruning of holders that died without running their exit hooks
(otherwise a `kill -9` would keep the server alive forever).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

DATABASE_NAME = "timo"


def start_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the server whose data lives in `data_dir`; return a URL for `database`."""
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on servers; pgserver only keeps a lock there.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import PostgresServer, get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _prune_dead_holders(data_dir.resolve(), PostgresServer)
    server = get_server(data_dir, cleanup_mode="stop")
    ensure_database(server.get_uri(), database)
    return server.get_uri(database)


def stop_postgres(data_dir: Path) -> None:
    """Give up this process's hold on the server in `data_dir` (the last one out stops it)."""
    from pgserver.postgres_server import PostgresServer

    server = PostgresServer._instances.get(data_dir.resolve())
    if server is not None:
        server.cleanup()


def ensure_database(admin_url: str, database: str) -> None:
    """Create `database` on the server behind `admin_url` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        # Another process may create it between our check and our CREATE.
        if not exists:
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _prune_dead_holders(data_dir: Path, server_class: type[PostgresServer]) -> None:
    holders_file = data_dir / ".handle_pids.json"
    if not holders_file.exists():
        return
    with server_class._lock:
        try:
            holders = json.loads(holders_file.read_text())
        except ValueError:
            holders = []
        alive = [pid for pid in holders if pid == os.getpid() or psutil.pid_exists(pid)]
        if alive != holders:
            logger.info("embedded postgres: dropping dead holders %s", set(holders) - set(alive))
            holders_file.write_text(json.dumps(alive))
