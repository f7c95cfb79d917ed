"""Finding the server processes a test started, to prove they are gone afterwards."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line or open files mention `text` (e.g. a TIMO_HOME)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            environ = proc.info.get("environ") or {}
            mentioned = text in cmdline or any(text in value for value in environ.values())
            # A process may exit between the listing and this look: it is gone, as asked.
            if mentioned and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_server_pids(home: Path) -> list[int]:
    """Pids of embedded PostgreSQL/Redis servers whose data lives under `home`."""
    pids = []
    for proc in processes_mentioning(str(home)):
        try:
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        if name in {"postgres", "redis-server"} or "redis-server" in " ".join(proc.cmdline()):
            pids.append(proc.pid)
    return pids
