"""Prometheus metrics of the web processes, and the operator-only `/metrics` endpoint.

Counted per request by the gate (`api.gate`, after the response is built): requests by route
template, method and status, and their latency. Admissions and refusals are counted by the gate
too; events published and publish failures by the publisher (`events.pipeline_metrics`).
`/metrics` answers only with `Authorization: Bearer $TIMO_METRICS_TOKEN`; without that setting it
does not exist (404).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Flask, Request, Response, request
from prometheus_client import Counter, Histogram

from api.current import current_runtime
from api.metering import route_template
from timo_hub.platform import prometheus

UNMATCHED = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}

REQUESTS = Counter("timo_http_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "timo_http_request_duration_seconds",
    "Time to build a response",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
ADMISSIONS = Counter(
    "timo_quota_admissions", "Authenticated calls admitted or refused by the quota", ["outcome"]
)

# Bound once: the gate counts every call, so skip the per-call label lookup.
ADMITTED = ADMISSIONS.labels("admitted")
REFUSED = ADMISSIONS.labels("refused")

blueprint = Blueprint("metrics", __name__)


def _series(rule: str, method: str, status: int) -> tuple[Any, Any]:
    """The (request counter, latency histogram) children for one kind of answer, made once."""
    # Unknown paths and methods share one label (and one cache entry) each: a scanner must not
    # create a time series, or a cache entry, per URL or verb it tries.
    verb = method if method in KNOWN_METHODS else "OTHER"
    key = (rule, verb, status)
    found = _SERIES.get(key)
    if found is None:
        route = route_template(rule) if rule != UNMATCHED else UNMATCHED
        found = (REQUESTS.labels(route, verb, str(status)), LATENCY.labels(route, verb))
        _SERIES[key] = found
    return found


def count(req: Request, status: int, elapsed: float | None) -> None:
    """Count one answered request and observe how long it took."""
    rule = req.url_rule.rule if req.url_rule is not None else UNMATCHED
    requests_total, latency = _series(rule, req.method, status)
    requests_total.inc()
    if elapsed is not None:
        latency.observe(elapsed)


@blueprint.get("/metrics")
def scrape() -> Response:
    """Every metric of this server's processes, for Prometheus (operator token required)."""
    token = current_runtime().settings.metrics_token or ""
    given = request.headers.get("Authorization", "")
    if not token:
        return Response("Not Found\n", status=404, mimetype="text/plain")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return Response(
            "Unauthorized\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(prometheus.render(), content_type=prometheus.CONTENT_TYPE)


def init_app(app: Flask) -> None:
    """Serve `/metrics` from `app`."""
    app.register_blueprint(blueprint)
