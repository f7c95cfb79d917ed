"""Keys created and revoked, with their webhooks recorded in the same transaction.

Every way a key is made or revoked (the API, the dashboard, the operator CLI) goes through here,
so `key.created` and `key.revoked` exist exactly when the change does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg

from timo_hub.accounts import service
from timo_hub.accounts.store import ApiKey, IssuedKey
from timo_hub.platform.runtime import Runtime
from timo_hub.webhooks import event_types, notifications
from timo_hub.webhooks.dispatch import DeliveryQueue


def issue_key(
    runtime: Runtime, deliveries: DeliveryQueue, account_id: uuid.UUID, name: str
) -> IssuedKey:
    """`accounts.service.issue_key`, with `key.created`."""
    made: list[str] = []

    def record(conn: psycopg.Connection, key: ApiKey) -> None:
        made.extend(
            notifications.key_changed(conn, event_types.KEY_CREATED, key, datetime.now(UTC))
        )

    issued = service.issue_key(runtime, account_id, name, within=record)
    deliveries.send(made)
    return issued


def revoke_key(
    runtime: Runtime,
    deliveries: DeliveryQueue,
    key_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
) -> ApiKey:
    """`accounts.service.revoke_key`, with `key.revoked` (once, however often it is revoked)."""
    made: list[str] = []

    def record(conn: psycopg.Connection, key: ApiKey) -> None:
        made.extend(
            notifications.key_changed(conn, event_types.KEY_REVOKED, key, datetime.now(UTC))
        )

    try:
        return service.revoke_key(runtime, key_id, account_id, within=record)
    finally:
        # Committed even when Redis could not be told (ChangeNotAnnouncedError).
        deliveries.send(made)
