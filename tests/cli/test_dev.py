"""`timo-hub dev` from a fresh home: healthy within 60 s, a working demo key, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port, processes_mentioning
from timo_hub.accounts.key_format import is_well_formed

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

STARTUP_BUDGET_SECONDS = 60


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update(
        {
            "TIMO_HOME": str(home),
            "PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "WORKER_CONCURRENCY": "1",
        }
    )
    return env


class DevProcess:
    """A running `timo-hub dev` whose output is collected in a file."""

    def __init__(self, home: Path, port: int) -> None:
        self.port = port
        self.log = home.parent / f"dev-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "timo_hub.cli", "dev"],
            env=_env(home, port),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def health(self) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=5)
        except requests.ConnectionError:
            return None

    def wait_healthy(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < STARTUP_BUDGET_SECONDS:
            assert self.process.poll() is None, self.output
            response = self.health()
            if response is not None and response.status_code == 200:
                return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"not healthy within {STARTUP_BUDGET_SECONDS}s:\n{self.output}")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.process.wait(timeout=60)


def _survivors(home: Path, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [" ".join(p.cmdline()) for p in processes_mentioning(str(home))]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _stored_key_is_active(home: Path, key: str) -> bool:
    code = f"""
        from timo_hub.accounts import store
        from timo_hub.platform.embedded import resolve_services
        from timo_hub.platform.runtime import build_runtime
        from timo_hub.platform.settings import Settings
        rt = build_runtime(resolve_services(Settings.from_env()))
        with rt.database.connection() as conn:
            print(store.key_is_active(conn, {key!r}, rt.settings.key_pepper))
        rt.close()
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(home, 0),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip() == "True"


def _wait_for_heartbeat(dev: DevProcess, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = dev.health()
        if response is not None and response.json()["workers"]["last_heartbeat"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"beat and worker never produced a heartbeat:\n{dev.output}")


def _signs_in(port: int, email: str, password: str) -> bool:
    """Sign in on the dashboard's form as a browser would; True if the dashboard then opens."""
    base = f"http://127.0.0.1:{port}"
    with requests.Session() as browser:
        form = browser.get(f"{base}/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        answer = browser.post(
            f"{base}/login",
            data={"email": email, "password": password, "csrf_token": token.group(1)},
            timeout=30,
        )
        return answer.status_code == 200 and answer.url == f"{base}/dashboard"


def test_dev_runs_the_whole_stack_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dev = DevProcess(home, free_port())
    try:
        dev.wait_healthy()
        _wait_for_heartbeat(dev)  # web, worker and beat are all up and talking
        password = (home / "demo-password").read_text().strip()
        assert f"sign in as demo@timo-hub.local with password {password}" in dev.output
        assert _signs_in(dev.port, "demo@timo-hub.local", password)
    finally:
        rc = dev.interrupt()
    assert rc in (0, 130), dev.output
    assert _survivors(home) == [], dev.output

    key_file = home / "demo-key"
    key = key_file.read_text().strip()
    assert is_well_formed(key)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key in dev.output, "the key is printed when it is created"
    assert _stored_key_is_active(home, key)
    assert _survivors(home) == []

    # A restart keeps the data: same demo key, not printed again.
    again = DevProcess(home, free_port())
    try:
        again.wait_healthy()
    finally:
        again.interrupt()
    assert key_file.read_text().strip() == key
    assert key not in again.output
    assert "its API key is in" in again.output
    # The demo password is kept too, and still printed (it is how a newcomer signs in).
    assert (home / "demo-password").read_text().strip() == password
    assert stat.S_IMODE((home / "demo-password").stat().st_mode) == 0o600
    assert password in again.output
    assert _survivors(home) == [], again.output
