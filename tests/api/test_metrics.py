"""Prometheus metrics: the operator-only endpoint, and counts added up across gunicorn workers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from api import close_app, create_app
from tests.support.accounts import Customer
from tests.support.waiting import eventually
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings

TOKEN = "operator-secret-for-tests"


@pytest.fixture
def scraped(runtime: Runtime, settings: Settings, tmp_path: Path) -> Iterator[FlaskClient]:
    """A client of an app configured with the operator's metrics token."""
    configured = settings.model_copy(update={"home": tmp_path / "home", "metrics_token": TOKEN})
    app = create_app({"SETTINGS": configured, "TESTING": True})
    yield app.test_client()
    close_app(app)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in exposition text (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_need_the_operator_token(
    client: FlaskClient, scraped: FlaskClient, customer: Customer
) -> None:
    assert client.get("/metrics").status_code == 404  # not configured: not there
    assert scraped.get("/metrics").status_code == 401
    assert scraped.get("/metrics", headers=customer.auth).status_code == 401  # a key is not it
    response = scraped.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"


def test_requests_admissions_and_events_are_counted(
    scraped: FlaskClient, customer: Customer
) -> None:
    client = scraped
    scrape = {"Authorization": f"Bearer {TOKEN}"}
    before = client.get("/metrics", headers=scrape).get_data(as_text=True)
    for _ in range(3):
        assert client.get("/api/v1/account", headers=customer.auth).status_code == 200
    assert client.get("/api/v1/auth/keys/nope", headers=customer.auth).status_code == 405
    client.get("/no/such/path")
    client.open("/api/v1/account", method="BREW", headers=customer.auth)
    after = client.get("/metrics", headers=scrape).get_data(as_text=True)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    ok = {"route": "/api/v1/account", "method": "GET", "status": "200"}
    assert grew("timo_http_requests_total", **ok) == 3
    assert grew("timo_http_requests_total", route="unmatched") >= 1
    assert grew("timo_quota_admissions_total", outcome="admitted") >= 3
    timing = {"route": "/api/v1/account", "method": "GET"}
    assert grew("timo_http_request_duration_seconds_count", **timing) == 3
    assert grew("timo_http_request_duration_seconds_bucket", **timing, le="+Inf") == 3
    assert 0 < grew("timo_http_request_duration_seconds_sum", **timing) < 3 * 5.0
    assert "timo_events_published_total" in after
    assert "timo_ingest_lag_seconds_bucket" in after
    # Unknown paths and methods never become labels of their own.
    assert "/no/such/path" not in after
    assert "BREW" not in after
    assert grew("timo_http_requests_total", route="unmatched", method="OTHER") == 1


@pytest.mark.slow
def test_counts_are_added_up_across_gunicorn_workers(
    settings: Settings, customer: Customer
) -> None:
    with web_process(settings, workers=2, env={"TIMO_METRICS_TOKEN": TOKEN}) as base:
        with requests.Session() as session:
            for _ in range(40):
                response = session.get(f"{base}/api/v1/account", headers=customer.auth)
                assert response.status_code == 200
        ok = {"route": "/api/v1/account", "method": "GET", "status": "200"}

        def scrape() -> str:
            return requests.get(
                f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
            ).text

        # Each worker writes its counts at most `FLUSH_SECONDS` after counting them.
        eventually(lambda: sample(scrape(), "timo_http_requests_total", **ok) == 40, timeout=5)
        text = scrape()
    assert sample(text, "timo_http_requests_total", **ok) == 40
    pids = set(re.findall(r'pid="(\d+)"', text))
    assert sample(text, "timo_quota_admissions_total", outcome="admitted") == 40, pids


def test_aggregated_latencies_land_in_the_buckets_observe_would_choose() -> None:
    # The flusher writes a second of observations per bucket through prometheus-client's
    # internals; this holds it to what `observe` does, so a library change cannot shift counts.
    from prometheus_client import CollectorRegistry, Histogram

    from api.http_metrics import _BOUNDS, LATENCY_BUCKETS, _observe_many, bucket_of

    registry = CollectorRegistry()
    histogram = Histogram("t", "t", ["way"], buckets=LATENCY_BUCKETS, registry=registry)
    values = [0.0, 0.0004, 0.001, 0.0010001, 0.0025, 0.3, 4.99, 5.0, 7.5, 120.0]
    for value in values:
        histogram.labels("observe").observe(value)
    counts = [0] * len(_BOUNDS)
    for value in values:
        counts[bucket_of(value)] += 1
    _observe_many(histogram.labels("aggregated"), counts, sum(values))
    samples = {
        (s.name, s.labels.get("le"), s.labels["way"]): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }
    observed = {(n, le): v for (n, le, way), v in samples.items() if way == "observe"}
    aggregated = {(n, le): v for (n, le, way), v in samples.items() if way == "aggregated"}
    assert observed == aggregated
