"""Every authenticated call becomes one usage event, published as its response is finished.

The gate calls `record_call` for successes, refusals (403, 429) and errors alike, once the status
is known; calls that never authenticated (401) have no principal and publish nothing. Publishing
appends to the local spool (`events.publisher`), so the event is durable before the response is
sent, and it costs the request microseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

from events.model import new_event_id_text, serialise_trusted
from events.publisher import EventPublisher
from timo_hub.accounts.principal import Principal
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


def record_call(
    publisher: EventPublisher,
    rule: str,
    method: str,
    principal: Principal,
    status: int,
    started_at: float,
    elapsed: float,
    request_id: str,
) -> None:
    """Publish the event of one authenticated call to Flask route `rule` that started at epoch
    `started_at`."""
    # Every value is produced here (ids, a route template, a validated request id), so the event's
    # JSON is written directly rather than through a model built and validated per request.
    line = serialise_trusted(
        event_id=new_event_id_text(),
        occurred_at=datetime.fromtimestamp(started_at, UTC),
        account_id=principal.account_text,
        key_id=principal.key_text,
        method=method,
        endpoint=route_template(rule),
        status=status,
        duration_ms=round(elapsed * 1000, 3),
        request_id=request_id,
    )
    publisher.publish_line(line)


def build_publisher(runtime: Runtime) -> EventPublisher:
    """This process's event publisher (spool under `TIMO_HOME/spool/events`)."""
    return EventPublisher(
        runtime.settings.home / "spool" / "events",
        runtime.broker_url,
        runtime.database,
        sync_seconds=runtime.settings.spool_sync_seconds,
    )
