"""Real web processes (gunicorn serving `api:create_app()`) on the test servers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import requests

from tests.support.processes import free_port
from timo_hub.platform.settings import Settings


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process use `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update(
        {
            "TIMO_ENV": settings.env,
            "TIMO_HOME": str(settings.home),
            "TIMO_DATABASE_URL": settings.database_url or "",
            "TIMO_REDIS_URL": settings.redis_url or "",
            "TIMO_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
            "TIMO_BROKER_URL": settings.effective_broker_url,
            "TIMO_KEY_PEPPER": settings.key_pepper,
            "TIMO_SECRET_KEY": settings.secret_key,
            "TIMO_WEBHOOKS_ALLOW_PRIVATE": str(settings.webhooks_allow_private).lower(),
            "TIMO_WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds),
        }
    )
    return env


PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


@contextmanager
def web_process(
    settings: Settings,
    workers: int = 1,
    healthy: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Run gunicorn on a free port; yield its base URL; stop it afterwards.

    Waits until health answers 200, or (with `healthy=False`, for servers whose dependencies
    are meant to be down) until it answers at all.
    """
    with web_server(settings, workers, healthy, env) as server:
        yield server.base


@dataclass(frozen=True)
class WebServer:
    """A running gunicorn: where it answers, and its master process (to kill)."""

    base: str
    process: subprocess.Popen[bytes]

    def processes(self) -> list[psutil.Process]:
        """The master and its workers."""
        try:
            master = psutil.Process(self.process.pid)
            return [master, *master.children()]
        except psutil.NoSuchProcess:
            return []


@contextmanager
def web_server(
    settings: Settings,
    workers: int = 1,
    healthy: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[WebServer]:
    """`web_process`, yielding the server's process too."""
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [
        str(gunicorn),
        "--config",
        "python:timo_hub.gunicorn_config",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--no-control-socket",
        "api:create_app()",
    ]
    with _serving(
        command, port, {**settings_environment(settings), **(env or {})}, healthy
    ) as server:
        yield server


@contextmanager
def procfile_web_process(
    settings: Settings, workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run the Procfile's `web` line as `timo-hub dev` (honcho) runs it, through a shell."""
    line = next(entry for entry in PROCFILE.read_text().splitlines() if entry.startswith("web:"))
    port = free_port()
    environment = {
        **settings_environment(settings),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(workers),
        **(env or {}),
    }
    # `exec` so that stopping the shell stops gunicorn's master.
    command = ["/bin/sh", "-c", "exec " + line.removeprefix("web:").strip()]
    with _serving(command, port, environment, healthy=True) as server:
        yield server.base


@contextmanager
def _serving(
    command: list[str], port: int, env: dict[str, str], healthy: bool
) -> Iterator[WebServer]:
    # A file, not a pipe: nobody reads a pipe while the server runs, and once its buffer is full
    # every log line (one per request) would block the worker that writes it.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, base, healthy, log)
            yield WebServer(base, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                tail = _read(log)[-4000:]
                raise AssertionError(f"gunicorn did not stop within 30 s:\n{tail}") from None


def _wait_until_up(
    process: subprocess.Popen[bytes], base: str, healthy: bool, log: IO[str]
) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, _read(log)
        try:
            status = requests.get(f"{base}/api/v1/health", timeout=5).status_code
            if status == 200 or not healthy:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "gunicorn did not come up"
        time.sleep(0.1)


def _read(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()
