"""Prometheus metrics: where multi-process servers keep them, and how they are rendered.

gunicorn and Celery run several processes; each writes its metrics to files in a per-server
directory (prometheus-client's multiprocess mode) and whoever serves `/metrics` adds them up.
`use_multiprocess_directory()` must run before `prometheus_client` is first imported in the
server's master process, so it is called from the process entry points (`timo_hub.gunicorn_config`,
`workers.entry`). A single process (tests, `flask run`) needs none of this.

`PROMETHEUS_MULTIPROC_DIR` is prometheus-client's own variable, the channel through which a
server's processes share the directory; it is set and read here, not configuration.

Platform code: imports nothing else of the product.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def use_multiprocess_directory(home: str | os.PathLike[str], server: str) -> Path:
    """Point this process (and its children) at a fresh metrics directory for `server`.

    The directory is `<home>/metrics/<server>-<pid>`: new for every start, so no counts from an
    earlier run linger; directories of servers that are gone are removed.
    """
    parent = Path(home) / "metrics"
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{server}-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    directory = parent / f"{server}-{os.getpid()}"
    # The same pid can come back (a container's PID 1 after a restart): start empty regardless.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def server_registry() -> CollectorRegistry | None:
    """A registry adding up every process of this server, or None for a single process."""
    from prometheus_client import CollectorRegistry, multiprocess

    if not os.environ.get(MULTIPROC_ENV):
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def render() -> bytes:
    """The exposition text of every metric of this server (all its processes)."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(server_registry() or REGISTRY)


def process_exited(pid: int) -> None:
    """Tell multiprocess mode a worker process is gone (its live gauges no longer count)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
