"""Every authenticated call becomes one usage event, published as its response is finished.

The `after_request` hook runs for successes, refusals (403, 429) and errors alike, once the status
is known; calls that never authenticated (401) have no principal and publish nothing. Publishing
appends to the local spool (`events.publisher`), so the event is durable before the response is
sent, and the hook costs the request microseconds.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from functools import lru_cache

from flask import Flask, Response, current_app, g, request

from events.model import new_event_id, serialise_trusted
from events.publisher import EventPublisher
from timo_hub.platform.runtime import Runtime

EXTENSION = "timo_events"
_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@lru_cache(maxsize=256)
def route_template(rule: str) -> str:
    """Flask's `/auth/keys/<key_id>` as the API documents it: `/auth/keys/{keyId}`."""
    return _PARAMETER.sub(lambda m: "{" + _camel(m.group(1)) + "}", rule)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def start_clock() -> None:
    """Note when the call started (called first thing by the access gate)."""
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    ctx_g.started_at = time.time()
    ctx_g.started_perf = time.perf_counter()


def record_call(response: Response) -> Response:
    """Blueprint `after_request`: publish the call's event if the caller authenticated."""
    ctx_g = g._get_current_object()  # type: ignore[attr-defined]
    principal = getattr(ctx_g, "principal", None)
    if principal is None:
        return response
    req = request._get_current_object()  # type: ignore[attr-defined]
    rule = req.url_rule.rule if req.url_rule is not None else req.path
    # Every value is produced here (ids, a route template, a validated request id), so the event's
    # JSON is written directly rather than through a model built and validated per request.
    line = serialise_trusted(
        event_id=new_event_id(),
        occurred_at=datetime.fromtimestamp(ctx_g.started_at, UTC),
        account_id=principal.account_id,
        key_id=principal.key_id,
        method=req.method,
        endpoint=route_template(rule),
        status=response.status_code,
        duration_ms=round((time.perf_counter() - ctx_g.started_perf) * 1000, 3),
        request_id=ctx_g.request_id,
    )
    current_app.extensions[EXTENSION].publish_line(line)
    return response


def init_app(app: Flask, runtime: Runtime) -> EventPublisher:
    """Attach this process's event publisher (spool under `TIMO_HOME/spool/events`)."""
    publisher = EventPublisher(
        runtime.settings.home / "spool" / "events", runtime.broker_url, runtime.database
    )
    app.extensions[EXTENSION] = publisher
    return publisher
