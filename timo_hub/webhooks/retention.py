"""How long the delivery log and the record of what happened are kept.

Finished deliveries (and their attempts) go after `DELIVERY_RETENTION`, what happened to an
account after `NOTIFICATION_RETENTION` (beyond the month whose "once" it guards, it is history
only). Pending deliveries are never deleted: they are still being tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from timo_hub.platform.db import Database

DELIVERY_RETENTION = timedelta(days=90)
NOTIFICATION_RETENTION = timedelta(days=400)
# Deleted in batches, so that one run never holds a long transaction or many locks.
BATCH = 5000

DELETE_DELIVERIES = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE state <> 'pending' AND created_at < %(before)s
    LIMIT %(batch)s)
"""
DELETE_NOTIFICATIONS = """
DELETE FROM account_notifications WHERE id IN (
    SELECT id FROM account_notifications n
    WHERE occurred_at < %(before)s
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries d
          WHERE d.notification_id = n.id AND d.state = 'pending')
    LIMIT %(batch)s)
"""


@dataclass(frozen=True)
class Pruned:
    """What one run deleted."""

    deliveries: int
    notifications: int


def prune(database: Database, now: datetime) -> Pruned:
    """Delete what is past retention, a batch per transaction."""
    deliveries = _delete(database, DELETE_DELIVERIES, now - DELIVERY_RETENTION)
    notifications = _delete(database, DELETE_NOTIFICATIONS, now - NOTIFICATION_RETENTION)
    return Pruned(deliveries, notifications)


def _delete(database: Database, statement: str, before: datetime) -> int:
    total = 0
    while True:
        with database.connection() as conn:
            deleted = conn.execute(statement, {"before": before, "batch": BATCH}).rowcount
        total += deleted
        if deleted < BATCH:
            return total
