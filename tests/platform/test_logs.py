"""Logs: JSON lines with the caller's ids in production, plain lines in development; no keys."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from tests.support.accounts import Customer
from tests.support.waiting import eventually
from timo_hub.platform import logs
from timo_hub.platform.settings import Settings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logs.build_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_access_log_is_json_with_the_callers_ids_and_never_the_key(
    client: FlaskClient, customer: Customer, captured: io.StringIO
) -> None:
    response = client.get("/api/v1/account", headers=customer.auth)
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "api.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert entry["account_id"] == str(customer.account.id)
    assert entry["key_id"] == customer.key_id
    assert (entry["method"], entry["route"], entry["status"]) == ("GET", "/api/v1/account", 200)
    assert entry["level"] == "INFO" and "time" in entry
    assert customer.secret not in captured.getvalue()


def test_unauthenticated_requests_log_without_ids(
    client: FlaskClient, captured: io.StringIO
) -> None:
    client.get("/api/v1/account", headers={"Authorization": "Bearer timo_live_nope"})
    entry = next(json.loads(x) for x in captured.getvalue().splitlines() if "api.access" in x)
    assert entry["status"] == 401 and entry["account_id"] == "" and entry["request_id"]
    assert "timo_live_nope" not in captured.getvalue()


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_the_access_fast_lane_writes_what_logging_would(fmt: str) -> None:
    # The access log skips `logging`'s records for speed; its lines must not differ for that.
    fast, slow = io.StringIO(), io.StringIO()
    fast_handler = logs.build_handler(fmt, fast)
    slow_handler = logs.build_handler(fmt, slow)
    fields: dict[str, object] = {
        "method": "GET",
        "route": "/api/v1/x/<key_id>",
        "status": 200,
        "duration_ms": 1.25,
    }
    assert isinstance(fast_handler, logs.ServiceLogHandler)
    fast_handler.write_line("api.access", 'GET /api/v1/x/"q" 200 1.25ms', ("", "", ""), fields)
    record = logging.LogRecord(
        "api.access", logging.INFO, __file__, 1, "%s", ('GET /api/v1/x/"q" 200 1.25ms',), None
    )
    record.__dict__.update(fields)
    slow_handler.handle(record)
    if fmt == "json":
        fast_line, slow_line = json.loads(fast.getvalue()), json.loads(slow.getvalue())
        assert list(fast_line) == list(slow_line)
        assert {**fast_line, "time": ""} == {**slow_line, "time": ""}
    else:
        assert fast.getvalue().split(" ", 2)[2] == slow.getvalue().split(" ", 2)[2]


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "GET", "route": None, "status": 404, "duration_ms": 0.438},
        {"method": "POST", "route": '/api/v1/é/\u2028"q"\\', "status": 201, "duration_ms": 1e-05},
        {"flag": True, "other": False, "big": 10**20, "nothing": None, "odd": uuid.UUID(int=7)},
    ],
)
def test_the_access_fast_lane_writes_the_bytes_json_dumps_would(fields: dict[str, object]) -> None:
    # The JSON line is put together by hand (cheaper than `json.dumps` per request): the same
    # bytes, escapes and number forms included, as the standard encoder writes.
    out = io.StringIO()
    handler = logs.build_handler("json", out)
    assert isinstance(handler, logs.ServiceLogHandler)
    message = 'GET /api/v1/\u00e9/"q"\n 200 1.25ms'
    handler.write_line("api.access", message, ("req", "acct", "key"), fields)
    written = out.getvalue().rstrip("\n")
    document = {
        "time": json.loads(written)["time"],
        "level": "INFO",
        "logger": "api.access",
        "message": message,
        **fields,
        "request_id": "req",
        "account_id": "acct",
        "key_id": "key",
    }
    assert written == json.dumps(document, default=str)


def test_production_access_lines_are_written_together_in_order_and_soon() -> None:
    # Guards against held access lines being lost, reordered behind later records, or kept
    # indefinitely by a quiet process.
    out = io.StringIO()
    handler = logs.build_handler("json", out)
    assert isinstance(handler, logs.ServiceLogHandler)
    handler.buffer_seconds = 0.2
    fields: dict[str, object] = {"status": 200}
    for n in range(3):
        handler.write_line("api.access", f"GET /{n}", ("", "", ""), fields)
    assert out.getvalue() == ""  # held, not written one write(2) each
    record = logging.LogRecord("timo", logging.WARNING, __file__, 1, "after", (), None)
    handler.handle(record)  # a record written later comes after them
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == [
        "GET /0",
        "GET /1",
        "GET /2",
        "after",
    ]
    handler.write_line("api.access", "GET /quiet", ("", "", ""), fields)
    eventually(lambda: "GET /quiet" in out.getvalue(), timeout=1.0)  # nobody else logs: flusher
    handler.write_line("api.access", "GET /last", ("", "", ""), fields)
    handler.flush()  # as `logging.shutdown` does at exit
    assert "GET /last" in out.getvalue()


class _BrokenPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("held_for", [0.0, 60.0], ids=["written-at-once", "held"])
def test_an_access_line_that_cannot_be_written_fails_nothing(
    monkeypatch: pytest.MonkeyPatch, held_for: float
) -> None:
    # Guards against the fast lane raising where `logging` would not: the request it describes
    # was already answered and counted, and a 500 then would have been a call billed as a 200.
    # Held lines are written by whichever logging call comes next: a broken stream raised out
    # of it (a warning logged in an `except` block then aborted the code that logged it).
    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler = logs.build_handler("json", _BrokenPipe())
    assert isinstance(handler, logs.ServiceLogHandler)
    handler.buffer_seconds = held_for
    handler.write_line("api.access", "GET / 200 1ms", ("", "", ""), {"status": 200})
    record = logging.LogRecord("timo", logging.WARNING, __file__, 1, "later", (), None)
    handler.handle(record)  # writes any held line first: fails, reported, not raised
    handler.flush()


def test_plain_format_outside_production() -> None:
    assert logs.log_format(Settings.from_env({})) == "plain"
    production = {
        "TIMO_ENV": "production",
        "TIMO_DATABASE_URL": "postgresql://db/timo",
        "TIMO_REDIS_URL": "redis://cache:6379/0",
        "TIMO_KEY_PEPPER": "p" * 40,
        "TIMO_SECRET_KEY": "s" * 40,
    }
    assert logs.log_format(Settings.from_env(production)) == "json"
    assert logs.log_format(Settings.from_env({"TIMO_LOG_FORMAT": "json"})) == "json"
    assert logs.log_format(Settings.from_env({**production, "TIMO_LOG_FORMAT": "plain"})) == "plain"
    assert logs.log_format(Settings.from_env({"TIMO_LOG_FORMAT": "xml"})) == "plain"
    stream = io.StringIO()
    handler = logs.build_handler("plain", stream)
    logger = logging.getLogger("tests.plain")
    logger.addHandler(handler)
    logger.warning("hello %s", "there")
    logger.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("WARNING tests.plain [] hello there")
