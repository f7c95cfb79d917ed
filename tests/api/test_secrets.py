"""A key's plaintext exists in exactly one response: not in PostgreSQL, Redis, any log line, nor
any file a real server leaves behind (event spool, metrics files, its stderr)."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql

from events.spool import written_lines
from tests.support.accounts import Customer
from tests.support.log_capture import captured
from tests.support.processes import free_port
from tests.support.waiting import eventually
from tests.support.web import settings_environment
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings


def _database_text(url: str) -> str:
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        dump = []
        for table in tables:
            query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            dump.extend(row[0] for row in conn.execute(query))
    return "\n".join(dump)


def _redis_text(runtime: Runtime) -> str:
    dump = []
    for key in runtime.redis.scan_iter():
        dump.append(key.decode(errors="replace"))
        if runtime.redis.type(key) == b"string":
            dump.append((runtime.redis.get(key) or b"").decode(errors="replace"))
    return "\n".join(dump)


def test_plaintext_is_nowhere_but_the_creating_response(
    client: FlaskClient, runtime: Runtime, customer: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = client.post(
        "/api/v1/auth/keys", headers=customer.auth, json={"name": "secret test"}
    ).get_json()
    secret = created["key"]
    auth = {"Authorization": f"Bearer {secret}"}
    client.get("/api/v1/account", headers=auth).close()
    client.get("/api/v1/auth/keys", headers=auth).close()
    client.get("/api/v1/account", headers={"Authorization": f"Bearer {secret[:-1]}x"})
    client.delete(f"/api/v1/auth/keys/{created['id']}", headers=auth)
    client.get("/api/v1/account", headers=auth)  # now revoked: 401

    body = secret[len("timo_live_") :]
    for where, text in (
        ("database", _database_text(runtime.settings.database_url or "")),
        ("redis", _redis_text(runtime)),
        ("logs", caplog.text),
    ):
        assert body not in text, f"key material found in {where}"
        assert customer.secret[len("timo_live_") :] not in text, f"key material in {where}"


def test_a_key_sent_where_it_does_not_belong_is_redacted_everywhere(
    app: Flask, client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    # Guards the defects where a full key put in a path (`DELETE /auth/keys/<the key>`) was
    # echoed in the 404 problem and written whole to the access log, and a key sent as
    # `X-Request-ID` passed the id filter: echoed in the header, logged, and stored in the event.
    body = customer.secret[len("timo_live_") :]
    with captured("api.access", "json") as access, captured("api", "plain") as app_lines:
        in_path = client.delete(f"/api/v1/auth/keys/{customer.secret}", headers=customer.auth)
        as_id = client.get(
            "/api/v1/account", headers={**customer.auth, "X-Request-ID": customer.secret}
        )
        logging.getLogger("api.probe").warning("a caller sent %s", customer.secret)
    assert in_path.status_code in (404, 422)
    assert as_id.status_code == 200
    answers = in_path.get_data(as_text=True) + str(in_path.headers) + str(as_id.headers)
    assert body not in answers
    assert "timo_live_" in in_path.get_json()["instance"]  # its display prefix stays readable
    assert body not in access.getvalue() and access.getvalue().count("\n") == 2
    assert body not in app_lines.getvalue() and "[redacted]" in app_lines.getvalue()
    home = app.extensions["timo"].settings.home
    spooled = "".join(
        "".join(written_lines(segment)) for segment in (home / "spool" / "events").glob("*.jsonl")
    )
    assert as_id.headers["X-Request-ID"] in spooled
    assert body not in spooled


@contextmanager
def _server(settings: Settings, output: Path) -> Iterator[str]:
    """gunicorn serving the app (as `tests.support.web.web_process` runs it), with everything it
    writes to stderr and stdout kept in `output`; stopped, and so flushed, on leaving."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--config",
        "python:timo_hub.gunicorn_config",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--no-control-socket",
        "api:create_app()",
    ]
    base = f"http://127.0.0.1:{port}"
    with output.open("w") as sink:
        process = subprocess.Popen(
            command, env=settings_environment(settings), stdout=sink, stderr=sink
        )
        try:

            def up() -> bool:
                assert process.poll() is None, output.read_text()
                try:
                    return requests.get(f"{base}/api/v1/health", timeout=5).status_code == 200
                except requests.ConnectionError:
                    return False

            eventually(up, timeout=60)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def _files_under(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def test_a_real_server_leaves_no_key_in_its_spool_metrics_files_or_output(
    settings: Settings, runtime: Runtime, customer: Customer, tmp_path: Path
) -> None:
    # A real gunicorn server, with a TIMO_HOME of its own: its event spool
    # (`$TIMO_HOME/spool/events`, `api.metering`), its Prometheus multiprocess files
    # (`$TIMO_HOME/metrics/web-<pid>`, `timo_hub.platform.prometheus`) and its stderr are what an
    # operator ships, backs up or pastes into a ticket. Keys go everywhere a client may put one.
    home = tmp_path / "home"
    output = tmp_path / "server-output.log"
    with (
        _server(settings.model_copy(update={"home": home}), output) as base,
        requests.Session() as http,
    ):
        made = http.post(
            f"{base}/api/v1/auth/keys", headers=customer.auth, json={"name": "secret test"}
        )
        assert made.status_code == 201
        secret, key_id = made.json()["key"], made.json()["id"]
        auth = {"Authorization": f"Bearer {secret}"}
        assert http.get(f"{base}/api/v1/account", headers=auth).status_code == 200
        # Another last character than the key's own (one key in 62 ends in "x" already).
        wrong = "x" if secret[-1] != "x" else "y"
        mistyped = {"Authorization": f"Bearer {secret[:-1]}{wrong}"}
        assert http.get(f"{base}/api/v1/account", headers=mistyped).status_code == 401
        as_id = http.get(f"{base}/api/v1/account", headers={**auth, "X-Request-ID": secret})
        assert as_id.status_code == 200
        in_path = http.delete(f"{base}/api/v1/auth/keys/{secret}", headers=customer.auth)
        assert in_path.status_code in (404, 422)
        in_query = http.get(f"{base}/api/v1/account", params={"key": secret}, headers=auth)
        assert in_query.status_code in (200, 400)
        assert http.delete(f"{base}/api/v1/auth/keys/{key_id}", headers=auth).status_code == 204
        assert http.get(f"{base}/api/v1/account", headers=auth).status_code == 401

    spool = _files_under(home / "spool" / "events")
    metrics = _files_under(home / "metrics")
    server_output = output.read_bytes()
    # Each place was written to (the scans below read something): the event of the call sent
    # with a key as its request id, the request counter of `/account`, the access lines.
    request_id = as_id.headers["X-Request-ID"].encode()
    assert any(request_id in data for data in spool.values())
    assert any(b"timo_http_requests" in d and b"/api/v1/account" in d for d in metrics.values())
    assert request_id in server_output and b"/api/v1/account" in server_output
    for key in (secret, customer.secret):
        body = key[len("timo_live_") :].encode()
        for path, data in {**spool, **metrics, output: server_output}.items():
            assert body not in data, f"key material in {path}"
