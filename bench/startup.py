"""How long `timo-hub dev` takes from a fresh clone's state to a healthy API, against the 60 s
budget of the foundation issue; and again on a warm restart (servers' data already on disk).

Run: `make bench` (or `.venv/bin/python bench/startup.py`). Prints each figure beside its
baseline as a ratio; lower is better. Uses a throwaway TIMO_HOME and a free port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BUDGET_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _time_to_healthy(home: Path) -> float:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update({"TIMO_HOME": str(home), "PORT": str(port)})
    started = time.monotonic()
    dev = subprocess.Popen(
        [sys.executable, "-m", "timo_hub.cli", "dev"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.monotonic() - started < BUDGET_SECONDS * 2:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.1)
        raise SystemExit("dev never became healthy")
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=60)


def main() -> None:
    """Measure a cold and a warm start and print them against the budget."""
    with tempfile.TemporaryDirectory(prefix="timo-bench-") as tmp:
        home = Path(tmp) / "home"
        cold = _time_to_healthy(home)
        warm = _time_to_healthy(home)
    print(f"{'measure':<32}{'seconds':>10}{'baseline':>10}{'ratio':>8}")
    for name, value in (("cold start to healthy (fresh)", cold), ("warm restart to healthy", warm)):
        print(f"{name:<32}{value:>10.2f}{BUDGET_SECONDS:>10.1f}{value / BUDGET_SECONDS:>8.3f}")


if __name__ == "__main__":
    main()
