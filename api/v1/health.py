"""`GET /api/v1/health`: is this process able to serve? No authentication, never counted.

Each dependency is probed with a short timeout. The answer is `200 ok` when PostgreSQL, Redis and
the broker all answer, otherwise `503 degraded`, naming the one that failed. Error details go to the
log, not to this public endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
from timo_hub.platform.runtime import Runtime, check_broker

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 1.5


def _probe(name: str, check: Callable[[], object]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure means "down"; the reason is for the operator's log
        logger.warning("health: %s is down: %s", name, exc)
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_postgres(runtime: Runtime) -> None:
    with runtime.database.connection(timeout=PROBE_TIMEOUT_SECONDS) as conn:
        conn.execute("SELECT 1")


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
    checks = {
        "postgresql": _probe("postgresql", lambda: _check_postgres(runtime)),
        "redis": _probe("redis", runtime.redis.ping),
        "broker": _probe("broker", lambda: check_broker(runtime.broker_url, PROBE_TIMEOUT_SECONDS)),
    }
    healthy = all(check["status"] == "up" for check in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "version": API_VERSION,
        "checks": checks,
        "workers": _workers(runtime),
    }
    response = jsonify(HealthOut.model_validate(body).model_dump(mode="json"))
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response
