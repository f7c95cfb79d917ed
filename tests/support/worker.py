"""Real Celery worker processes (prefork, as in production) on the test servers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.support.web import settings_environment
from timo_hub.platform.settings import Settings


class WorkerProcess:
    """`celery -A workers.entry worker` as a child process."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        celery = Path(sys.executable).parent / "celery"
        self.log = log
        self.process = subprocess.Popen(
            [
                str(celery),
                "-A",
                "workers.entry",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--without-mingle",
                "--without-gossip",
                "-Q",
                "events,celery,webhooks",
                "-n",
                f"test-{time.monotonic_ns()}@%h",
            ],
            env={**settings_environment(settings), **(env or {})},
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The main (consumer) process."""
        return self.process.pid

    def pool_children(self) -> list[psutil.Process]:
        """The prefork pool's processes."""
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """Warm shutdown; kill if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for child in self.pool_children():
            child.kill()


@contextmanager
def worker_process(
    settings: Settings, log: Path, concurrency: int = 1, env: dict[str, str] | None = None
) -> Iterator[WorkerProcess]:
    """Run a worker for the duration of the block."""
    worker = WorkerProcess(settings, log, concurrency, env)
    try:
        yield worker
    finally:
        worker.stop()
