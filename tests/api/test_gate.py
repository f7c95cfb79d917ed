"""The request gate: one clock for the usage event, the access log and the latency histogram."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import http_metrics
from tests.support.accounts import Customer
from timo_hub.platform import logs


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logs.build_handler("json", stream)
    access = logging.getLogger("api.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    yield stream
    access.removeHandler(handler)
    access.setLevel(level)


def spooled_events(home: Path) -> list[dict[str, object]]:
    """Every event line the app's publisher has spooled so far."""
    lines = []
    for segment in sorted((home / "spool" / "events").glob("*.jsonl")):
        lines += [json.loads(line) for line in segment.read_text().splitlines() if line]
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
