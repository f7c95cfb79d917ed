"""A key's plaintext exists in exactly one response: not in PostgreSQL, Redis or any log line."""

from __future__ import annotations

import logging

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql

from events.spool import written_lines
from tests.support.accounts import Customer
from tests.support.log_capture import captured
from timo_hub.platform.runtime import Runtime


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
