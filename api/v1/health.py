"""`GET /api/v1/health`: is this process able to serve? No authentication, never counted.

Each dependency is probed with a short timeout, all at once, and the answer comes within
`ANSWER_WITHIN_SECONDS` whatever they do. The answer is `200 ok` when PostgreSQL, Redis and
the broker all answer, otherwise `503 degraded`, naming the one that failed. Error details go to the
log, not to this public endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from datetime import UTC, datetime
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from api.current import current_runtime
from api.openapi.registry import Reply, operation
from api.v1 import blueprint
from api.v1.schemas import HealthOut
from timo_hub import API_VERSION
from timo_hub.platform.heartbeat import last_heartbeat
from timo_hub.platform.redis_client import describe
from timo_hub.platform.runtime import Runtime, check_broker

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 1.5


# The whole answer, whatever a dependency does: a server that accepts connections and never
# answers (stopped, or its host's network buffers full) must make health say "down", not hang
# until gunicorn kills the worker.
ANSWER_WITHIN_SECONDS = 2.5


def _probe(name: str, check: Callable[[], object]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        found = check()
    except Exception as exc:  # any failure means "down"; the reason is for the operator's log
        logger.warning("health: %s is down: %s", name, exc)
        return {"status": "down", "error": type(exc).__name__}
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    details = found if isinstance(found, dict) else {}
    return {"status": "up", "latency_ms": latency_ms, **details}


class _Probes:
    """Each dependency's probe in a thread of its own, all under one deadline; a probe still
    running from an earlier call is not started again (a stalled server holds one thread per
    dependency, not one per health call).

    Daemon threads, not an executor's: Python waits for an executor's threads at exit, so a
    probe stuck on a stalled server would hold a worker's shutdown (and its last event
    shipping) until gunicorn killed it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._running: dict[str, Future[dict[str, Any]]] = {}

    def run(
        self, checks: dict[str, Callable[[], dict[str, Any]]]
    ) -> dict[str, dict[str, Any] | None]:
        """Each check's result, or None for those that did not finish in time."""
        with self._lock:
            if self._pid != os.getpid():  # a forked worker has none of its parent's threads
                self._pid, self._running = os.getpid(), {}
            futures = {}
            for name, check in checks.items():
                earlier = self._running.get(name)
                if earlier is not None and not earlier.done():
                    futures[name] = earlier
                else:
                    futures[name] = self._running[name] = _start(name, check)
        deadline = time.monotonic() + ANSWER_WITHIN_SECONDS
        results: dict[str, dict[str, Any] | None] = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(deadline - time.monotonic(), 0))
            except FuturesTimeout:
                logger.warning("health: no answer from %s in %.1fs", name, ANSWER_WITHIN_SECONDS)
                results[name] = None
        return results


def _start(name: str, check: Callable[[], dict[str, Any]]) -> Future[dict[str, Any]]:
    future: Future[dict[str, Any]] = Future()

    def run() -> None:
        try:
            future.set_result(check())
        except BaseException as exc:  # the checks catch their own; this is the last resort
            future.set_exception(exc)

    threading.Thread(target=run, name=f"health-{name}", daemon=True).start()
    return future


_PROBES = _Probes()


def _check_postgres(runtime: Runtime) -> None:
    with runtime.database.connection(timeout=PROBE_TIMEOUT_SECONDS) as conn:
        conn.execute("SELECT 1")


def _redis_state(runtime: Runtime) -> dict[str, Any]:
    found = describe(runtime.redis)
    return {"cluster": found} if found else {}


def _workers(runtime: Runtime) -> dict[str, Any]:
    try:
        seen = last_heartbeat(runtime.redis)
    except Exception:
        return {"last_heartbeat": None, "heartbeat_age_seconds": None}
    if seen is None:
        return {"last_heartbeat": None, "heartbeat_age_seconds": None}
    age = (datetime.now(UTC) - seen).total_seconds()
    return {"last_heartbeat": seen.isoformat(), "heartbeat_age_seconds": round(age, 1)}


@operation(
    blueprint,
    "GET",
    "/health",
    summary="Service health",
    tag="meta",
    authenticated=False,
    replies=(
        Reply(200, "Every dependency answers.", HealthOut),
        Reply(503, "A dependency is down (named in `checks`).", HealthOut),
    ),
)
def health() -> ResponseReturnValue:
    """Report the state of each dependency; 503 when any is down."""
    runtime = current_runtime()
    probed = _PROBES.run(
        {
            "postgresql": lambda: _probe("postgresql", lambda: _check_postgres(runtime)),
            "redis": lambda: _probe("redis", lambda: _redis_state(runtime)),
            "broker": lambda: _probe(
                "broker", lambda: check_broker(runtime.broker_url, PROBE_TIMEOUT_SECONDS)
            ),
            "workers": lambda: _workers(runtime),
        }
    )
    timed_out = {"status": "down", "error": "Timeout"}
    checks = {name: probed[name] or timed_out for name in ("postgresql", "redis", "broker")}
    workers = probed["workers"] or {"last_heartbeat": None, "heartbeat_age_seconds": None}
    healthy = all(check["status"] == "up" for check in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "version": API_VERSION,
        "checks": checks,
        "workers": workers,
    }
    response = jsonify(HealthOut.model_validate(body).model_dump(mode="json"))
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
