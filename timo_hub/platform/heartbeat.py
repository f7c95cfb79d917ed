"""Worker liveness: workers stamp a Redis key on a beat schedule, health reports its age.

This tells an operator that beat, the broker and at least one worker are moving, which the
connection checks alone cannot show. It does not make health degraded: the API keeps serving
(and events keep queueing) while workers are away.
"""

from __future__ import annotations

from datetime import UTC, datetime

from timo_hub.platform.redis_client import AnyRedis

KEY = "timo:workers:heartbeat"
# Long enough to outlive a few missed beats, short enough that a dead fleet shows as absent.
TTL_SECONDS = 600


def record_heartbeat(client: AnyRedis, now: datetime | None = None) -> datetime:
    """Stamp the heartbeat with `now` (UTC) and return it."""
    now = now or datetime.now(UTC)
    client.set(KEY, now.isoformat(), ex=TTL_SECONDS)
    return now


def last_heartbeat(client: AnyRedis) -> datetime | None:
    """When a worker last stamped the heartbeat, or None if none has lately."""
    value = client.get(KEY)
    if not value:
        return None
    return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
