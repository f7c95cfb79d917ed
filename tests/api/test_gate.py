"""The request gate: one clock for the usage event, the access log and the latency histogram."""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import close_app, create_app, http_metrics, metering
from events.spool import written_lines
from tests.support.accounts import Customer
from tests.support.log_capture import captured
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    with captured("api.access", "json") as lines:
        yield lines


def spooled_events(home: Path) -> list[dict[str, object]]:
    """Every event line the app's publisher has spooled so far."""
    lines = []
    for segment in sorted((home / "spool" / "events").glob("*.jsonl")):
        lines += [json.loads(line) for line in written_lines(segment)]
    return lines


def test_event_log_line_and_histogram_time_the_same_interval(
    app: Flask, client: FlaskClient, customer: Customer, access_lines: io.StringIO
) -> None:
    # Guards the three separate clocks the hooks used to start: the event's duration_ms began at
    # admission, the log line's and the histogram's at two other before_request hooks.
    latency = http_metrics.LATENCY.labels("/api/v1/account", "GET")
    sum_before = latency._sum.get()
    response = client.get("/api/v1/account", headers=customer.auth)
    assert response.status_code == 200
    http_metrics.flush()  # the request path queues its observation; a flush writes it
    observed = latency._sum.get() - sum_before

    (event,) = [
        e
        for e in spooled_events(app.extensions["timo"].settings.home)
        if e["request_id"] == response.headers["X-Request-ID"]
    ]
    (line,) = [json.loads(x) for x in access_lines.getvalue().splitlines()]
    assert line["request_id"] == event["request_id"]
    assert line["duration_ms"] == event["duration_ms"] == round(observed * 1000, 3)


def test_the_event_is_dated_by_the_clock_that_opened_the_request(
    app: Flask, client: FlaskClient, customer: Customer
) -> None:
    before = datetime.now().astimezone()
    response = client.get("/api/v1/account/quota", headers=customer.auth)
    after = datetime.now().astimezone()
    (event,) = [
        e
        for e in spooled_events(app.extensions["timo"].settings.home)
        if e["request_id"] == response.headers["X-Request-ID"]
    ]
    occurred = datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))
    assert before <= occurred <= after
    # The quota month the call was counted in is the month of that same instant.
    body = response.get_json()
    start, end = (
        datetime.fromisoformat(body[k].replace("Z", "+00:00"))
        for k in ("period_start", "period_end")
    )
    assert start <= occurred < end


@pytest.fixture
def served(runtime: Runtime, settings: Settings, tmp_path: Path) -> Iterator[Flask]:
    """The app as in production: an unexpected error becomes a 500 (not raised to the test)."""
    app = create_app({"SETTINGS": settings.model_copy(update={"home": tmp_path / "home"})})
    yield app
    close_app(app)


def test_a_step_failing_after_the_event_does_not_record_the_call_twice(
    served: Flask, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the defect where a step failing after the event was spooled (here the metrics)
    # made Flask answer 500 and run the closing hook again: a second event, a phantom call. The
    # event says 200, and so does the answer: bookkeeping after it does not fail the call.
    real_count = http_metrics.count
    failures = []

    def count_failing_once(*args: object) -> None:
        if not failures:
            failures.append(True)
            raise RuntimeError("metrics storage broke")
        real_count(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(http_metrics, "count", count_failing_once)
    response = served.test_client().get("/api/v1/account", headers=customer.auth)
    assert failures and response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    events = [
        e
        for e in spooled_events(served.extensions["timo"].settings.home)
        if e["request_id"] == request_id
    ]
    assert [e["status"] for e in events] == [200]


def test_an_event_that_cannot_be_written_is_a_500_counted_and_logged_once(
    served: Flask, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the middleware's replacement answer: the 500 must carry the gate's headers once
    # (they are appended after the replacement), a problem body quoting the request id, and
    # reach the request metrics and the access log, as every answer sent does.
    publisher = served.extensions[metering.EXTENSION]

    def spool_full(line: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publisher, "publish_line", spool_full)
    errors = http_metrics.REQUESTS.labels("/api/v1/account", "GET", "500")
    errors_before = errors._value.get()
    with captured("api.access", "json") as lines:
        response = served.test_client().get("/api/v1/account", headers=customer.auth)
    http_metrics.flush()
    assert response.status_code == 500
    assert response.content_type == "application/problem+json"
    assert len(response.headers.getlist("X-Request-ID")) == 1
    assert len(response.headers.getlist("X-RateLimit-Remaining")) == 1
    request_id = response.headers["X-Request-ID"]
    assert response.get_json()["request_id"] == request_id
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert errors._value.get() - errors_before == 1
    (line,) = [json.loads(x) for x in lines.getvalue().splitlines()]
    assert (line["status"], line["request_id"]) == (500, request_id)


def test_a_spool_that_cannot_take_events_refuses_calls_before_counting_them(
    served: Flask, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards the defect where a spool that could not open a segment (a full disk; no descriptor
    # left) failed the call with a 500 after the quota had counted it: a call billed and never
    # served, with no event. Disk full is injected where the spool reserves a segment's blocks.
    def disk_full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    client = served.test_client()
    with monkeypatch.context() as patched:
        patched.setattr(os, "posix_fallocate", disk_full)
        refused = client.get("/api/v1/account", headers=customer.auth)
    assert refused.status_code == 503
    assert refused.content_type == "application/problem+json"
    assert refused.headers["Retry-After"] == "1"
    quota = client.get("/api/v1/account/quota", headers=customer.auth)
    assert quota.status_code == 200
    assert quota.get_json()["used"] == 1  # this call only: the refused one was never counted
    events = spooled_events(served.extensions["timo"].settings.home)
    assert [e["request_id"] for e in events] == [quota.headers["X-Request-ID"]]
