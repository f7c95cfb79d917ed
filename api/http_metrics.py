"""Prometheus metrics of the web processes, and the operator-only `/metrics` endpoint.

Counted per request by the gate (`api.gate`, once the answer is started): requests by route
template, method and status, and their latency. Admissions and refusals are counted by the gate
too; events published and publish failures by the publisher (`events.pipeline_metrics`).

The request path only appends to an in-memory queue; a thread of each process folds the queue into
the shared metric files every `FLUSH_SECONDS`, one write per series rather than four per request
(each write to a memory-mapped file on disk may fault after writeback). A scrape flushes its own
process first; the other processes' counts are at most `FLUSH_SECONDS` old.
`/metrics` answers only with `Authorization: Bearer $TIMO_METRICS_TOKEN`; without that setting it
does not exist (404).
"""

from __future__ import annotations

import atexit
import bisect
import hmac
import logging
import os
import threading
import time
from collections import Counter as Tally
from collections import deque
from typing import Any

from flask import Blueprint, Flask, Response, request
from prometheus_client import Counter, Histogram

from api.current import current_runtime
from api.metering import route_template
from timo_hub.platform import prometheus

UNMATCHED = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUESTS = Counter("timo_http_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "timo_http_request_duration_seconds",
    "Time to build a response",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
ADMISSIONS = Counter(
    "timo_quota_admissions", "Authenticated calls admitted or refused by the quota", ["outcome"]
)

# Bound once: the gate counts every call, so skip the per-call label lookup.
ADMITTED = ADMISSIONS.labels("admitted")
REFUSED = ADMISSIONS.labels("refused")
FLUSH_SECONDS = 1.0

logger = logging.getLogger(__name__)
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


class _Pending:
    """What this process has counted since the last flush (appends are thread-safe)."""

    def __init__(self) -> None:
        self.answers: deque[tuple[str, str, int, float | None]] = deque()
        self.admissions: deque[bool] = deque()
        self.flusher_started = False
        self.lock = threading.Lock()

    def start_flusher(self) -> None:
        with self.lock:
            if self.flusher_started:
                return
            self.flusher_started = True
        try:
            threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True).start()
        except RuntimeError:  # no thread to be had now: try again on a later request
            with self.lock:
                self.flusher_started = False
            return
        atexit.register(flush)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                flush()
            except Exception:  # a metrics write must never stop the counting
                logger.warning("could not write request metrics", exc_info=True)


_PENDING = _Pending()


def _forget_parent_pending() -> None:
    # A forked child (a gunicorn worker) counts afresh with a flusher of its own.
    global _PENDING
    _PENDING = _Pending()


os.register_at_fork(after_in_child=_forget_parent_pending)


def count(rule: str | None, method: str, status: int, elapsed: float | None) -> None:
    """Count one answered request to Flask route `rule` (None: no route matched) and how long it
    took (written at the next flush)."""
    pending = _PENDING
    pending.answers.append((rule or UNMATCHED, method, status, elapsed))
    if not pending.flusher_started:
        pending.start_flusher()


def count_admission(admitted: bool) -> None:
    """Count one quota decision (written at the next flush)."""
    _PENDING.admissions.append(admitted)


def flush() -> None:
    """Write what this process counted since the last flush to the metric files."""
    pending = _PENDING
    # The writes too are under the lock: a scrape's flush must not return while the thread's
    # flush still holds counts it has taken but not written.
    with pending.lock:
        answers: Tally[Any] = Tally()
        observed: dict[Any, tuple[list[int], list[float]]] = {}
        while pending.answers:
            rule, method, status, elapsed = pending.answers.popleft()
            requests_total, latency = _series(rule, method, status)
            answers[requests_total] += 1
            if elapsed is not None:
                buckets, total = observed.setdefault(latency, ([0] * len(_BOUNDS), [0.0]))
                buckets[bucket_of(elapsed)] += 1
                total[0] += elapsed
        decisions = Tally(pending.admissions.popleft() for _ in range(len(pending.admissions)))
        for requests_total, n in answers.items():
            requests_total.inc(n)
        for latency, (buckets, total) in observed.items():
            _observe_many(latency, buckets, total[0])
        if decisions[True]:
            ADMITTED.inc(decisions[True])
        if decisions[False]:
            REFUSED.inc(decisions[False])


_BOUNDS = [*LATENCY_BUCKETS, float("inf")]


def bucket_of(seconds: float) -> int:
    """The index of the histogram bucket `observe` would count `seconds` in (first bound >=)."""
    return bisect.bisect_left(_BOUNDS, seconds)


def _observe_many(latency: Any, buckets: list[int], total: float) -> None:
    """Add many observations to one histogram child: per bucket, as `observe` would."""
    for index, n in enumerate(buckets):
        if n:
            latency._buckets[index].inc(n)
    latency._sum.inc(total)


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
    flush()
    return Response(prometheus.render(), content_type=prometheus.CONTENT_TYPE)


def init_app(app: Flask) -> None:
    """Serve `/metrics` from `app`."""
    app.register_blueprint(blueprint)
