"""The kinds of webhook, and their `data`: the same facts, under the same names, as the API gives.

Quota events carry what `GET /api/v1/account/quota` would have said at that moment; key events
carry the key as `GET /api/v1/auth/keys` lists it (never its secret); the projected exhaustion
carries the figures of `GET /api/v1/usage/forecast`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from timo_hub.platform import months
from timo_hub.platform.json_types import utc_iso

THRESHOLD_REACHED = "quota.threshold_reached"
EXHAUSTED = "quota.exhausted"
EXHAUSTION_PROJECTED = "quota.exhaustion_projected"
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
# Sent by `POST /api/v1/webhooks/{id}/test` only; nobody subscribes to it.
TEST = "webhook.test"

EVENT_TYPES: tuple[str, ...] = (
    THRESHOLD_REACHED,
    EXHAUSTED,
    EXHAUSTION_PROJECTED,
    KEY_CREATED,
    KEY_REVOKED,
)


def iso(moment: datetime) -> str:
    """UTC, milliseconds, `Z`: how every timestamp in a payload is written."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def month_label(first_day: date) -> str:
    """`2026-12`: the month a once-a-month event belongs to (its dedupe key)."""
    return first_day.strftime("%Y-%m")


def quota_data(
    account_id: uuid.UUID, first_day: date, limit: int | None, used: int
) -> dict[str, Any]:
    """The month's usage as `GET /api/v1/account/quota` says it (plus the account)."""
    start, end = months.month_span(datetime(first_day.year, first_day.month, 1, tzinfo=UTC))
    return {
        "account_id": str(account_id),
        "limit": limit,
        "used": used,
        "remaining": None if limit is None else max(limit - used, 0),
        "reset": int(end.timestamp()),
        "period_start": utc_iso(start),
        "period_end": utc_iso(end),
    }


def threshold_data(
    account_id: uuid.UUID, first_day: date, limit: int, used: int, threshold: int
) -> dict[str, Any]:
    """`quota.threshold_reached`: the percentage reached, and the month's usage."""
    return {"threshold": threshold, **quota_data(account_id, first_day, limit, used)}


def envelope(kind: str, occurred_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload: `{type, timestamp, data}`."""
    return {"type": kind, "timestamp": iso(occurred_at), "data": data}
