"""Embedded PostgreSQL and Redis: start, share, persist, stop, and heal after a restart.

Each test runs real `timo-hub` processes on a fresh `TIMO_HOME`, whatever `TIMO_TEST_*` say: these
tests are about the embedded servers themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from api import close_app, create_app
from tests.support.processes import embedded_server_pids
from timo_hub.platform.embedded import EmbeddedRedis, resolve_services
from timo_hub.platform.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.embedded]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env["TIMO_HOME"] = str(home)
    return env


def _python(home: Path, code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        **kwargs,
    )


def _wait_until_gone(home: Path, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (pids := embedded_server_pids(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


WRITE_BOTH = """
    from timo_hub.platform.embedded import resolve_services
    from timo_hub.platform.runtime import build_runtime
    from timo_hub.platform.settings import Settings
    from timo_hub.platform.migrate import migrate
    rt = build_runtime(resolve_services(Settings.from_env()))
    migrate(rt.settings.database_url)
    with rt.database.connection() as conn:
        conn.execute("INSERT INTO accounts (email, plan) VALUES ('kept@example.com', 'free')")
    rt.redis.set("kept", "yes")
    rt.close()
"""

READ_BOTH = """
    from timo_hub.platform.embedded import resolve_services
    from timo_hub.platform.runtime import build_runtime
    from timo_hub.platform.settings import Settings
    rt = build_runtime(resolve_services(Settings.from_env()))
    with rt.database.connection() as conn:
        print(conn.execute("SELECT email FROM accounts").fetchone()[0])
    print(rt.redis.get("kept").decode())
    rt.close()
"""

HOLD = """
    import sys
    from timo_hub.platform.embedded import resolve_services
    from timo_hub.platform.settings import Settings
    resolve_services(Settings.from_env())
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_command_starts_the_servers_and_stops_them_on_exit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "timo_hub.cli", "migrate"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Applied 0001_plans_accounts_api_keys" in result.stdout
    assert (home / "postgres" / "PG_VERSION").exists()
    assert _wait_until_gone(home) == []


def test_data_survives_a_restart_of_the_servers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _python(home, WRITE_BOTH)
    assert _wait_until_gone(home) == []
    assert _python(home, READ_BOTH).stdout.split() == ["kept@example.com", "yes"]
    assert _wait_until_gone(home) == []


def _start_holder(home: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD)],
        env=_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_process_joins_and_the_last_one_out_stops_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = _start_holder(home)
    running = sorted(embedded_server_pids(home))
    assert len(running) >= 2

    _python(home, WRITE_BOTH)  # joins, works, exits: the servers must stay up for the holder
    assert set(running) <= set(embedded_server_pids(home))

    holder.communicate("", timeout=60)
    assert _wait_until_gone(home) == []


def test_a_killed_holder_does_not_keep_the_servers_alive(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = _start_holder(home)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert embedded_server_pids(home), "nothing stopped the servers of a killed holder yet"

    _python(home, WRITE_BOTH)  # the next process prunes the dead holder and, last out, stops them
    assert _wait_until_gone(home) == []


def test_health_follows_redis_down_and_back_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = resolve_services(Settings(env="test", home=home))
    app = create_app({"SETTINGS": settings})
    client = app.test_client()
    redis_server = EmbeddedRedis(home / "redis")
    try:
        assert client.get("/api/v1/health").status_code == 200
        redis_server.stop()
        degraded = client.get("/api/v1/health")
        assert degraded.status_code == 503
        assert degraded.get_json()["checks"]["redis"]["status"] == "down"
        redis_server.acquire()
        assert client.get("/api/v1/health").status_code == 200
    finally:
        close_app(app)
        redis_server.release()
