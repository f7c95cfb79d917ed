"""Recording what happened to an account, once, with one delivery per subscribed endpoint.

Several processes may notice the same occurrence (every web process sees the counter cross 80%,
the catch-up run sees it again); the unique `(account, type, dedupe_key)` makes the first record
the only one, and the fan-out happens in that same transaction, so an occurrence is never
recorded without its deliveries.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import psycopg

from timo_hub.accounts.store import ApiKey
from timo_hub.platform.json_types import utc_iso
from timo_hub.webhooks import event_types, store


def notify(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    kind: str,
    dedupe_key: str,
    data: dict[str, Any],
    occurred_at: datetime,
) -> list[str]:
    """Record the occurrence unless it already was; the ids of the deliveries it made (none
    when it was already recorded, or no endpoint listens)."""
    payload = event_types.envelope(kind, occurred_at, data)
    notification = store.insert_notification(
        conn, account_id, kind, dedupe_key, occurred_at, payload
    )
    if notification is None:
        return []
    return store.fan_out(conn, account_id, notification, kind, payload, occurred_at)


def threshold_reached(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    first_day: date,
    limit: int,
    used: int,
    threshold: int,
    now: datetime,
) -> list[str]:
    """`quota.threshold_reached` for `threshold` percent, once per account, month and threshold."""
    data = event_types.threshold_data(account_id, first_day, limit, used, threshold)
    key = f"{event_types.month_label(first_day)}:{threshold}"
    return notify(conn, account_id, event_types.THRESHOLD_REACHED, key, data, now)


def exhausted(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    first_day: date,
    limit: int,
    used: int,
    now: datetime,
) -> list[str]:
    """`quota.exhausted`: the month's first refusal, once per account and month."""
    data = event_types.quota_data(account_id, first_day, limit, used)
    key = event_types.month_label(first_day)
    return notify(conn, account_id, event_types.EXHAUSTED, key, data, now)


def key_changed(conn: psycopg.Connection, kind: str, key: ApiKey, now: datetime) -> list[str]:
    """`key.created` or `key.revoked`, once per key and kind."""
    data = {
        "account_id": str(key.account_id),
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        # Written as `GET /auth/keys` writes them (to the microsecond).
        "created_at": utc_iso(key.created_at),
        "last_used_at": None if key.last_used_at is None else utc_iso(key.last_used_at),
        "revoked_at": None if key.revoked_at is None else utc_iso(key.revoked_at),
    }
    return notify(conn, key.account_id, kind, str(key.id), data, now)
