"""Projected-quota alerts: when a forecast calls for one, and the `usage_alerts` table.

An alert is raised when a month's projection reaches 80% of the limit (`projected_80_percent`) or
runs out before the month ends (`projected_exhaustion`): at most one per account, month and kind,
never repeated, so a customer is never told twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal

import psycopg

from timo_hub.platform.db import Database
from timo_hub.webhooks import event_types, notifications

if TYPE_CHECKING:
    from analytics.month_projection import MonthProjection

logger = logging.getLogger(__name__)

AlertKind = Literal["projected_80_percent", "projected_exhaustion"]
ALERT_SHARE = 0.8
ALERT_80_PERCENT: AlertKind = "projected_80_percent"
ALERT_EXHAUSTION: AlertKind = "projected_exhaustion"
# The alerts table stores calls as bigint; a projection is never allowed near that, but a stored
# number must not be able to fail the insert.
MAX_STORED_CALLS = 2**62

RAISE_ALERT = """
INSERT INTO usage_alerts
    (account_id, month, kind, monthly_limit, used, projected_total, exhaustion_date)
VALUES (%(account)s, %(month)s, %(kind)s, %(limit)s, %(used)s, %(projected)s, %(exhaustion)s)
ON CONFLICT (account_id, month, kind) DO NOTHING
RETURNING id
"""
ALERTS = """
SELECT id, month, kind, raised_at, monthly_limit, used, projected_total, exhaustion_date
FROM usage_alerts
WHERE account_id = %(account)s
ORDER BY raised_at DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class StoredAlert:
    """A projected-quota alert as stored."""

    id: int
    month: date
    kind: AlertKind
    raised_at: datetime
    monthly_limit: int
    used: int
    projected_total: int
    exhaustion_date: date | None


def record_alert(
    conn: psycopg.Connection,
    account_id: uuid.UUID,
    month: date,
    kind: AlertKind,
    *,
    limit: int,
    used: int,
    projected_total: int,
    exhaustion_date: date | None,
) -> bool:
    """Record an alert unless this account already has one of this kind this month."""
    row = conn.execute(
        RAISE_ALERT,
        {
            "account": account_id,
            "month": month,
            "kind": kind,
            "limit": limit,
            "used": used,
            "projected": projected_total,
            "exhaustion": exhaustion_date,
        },
    ).fetchone()
    return row is not None


def list_alerts(conn: psycopg.Connection, account_id: uuid.UUID, limit: int) -> list[StoredAlert]:
    """The account's alerts, newest first, at most `limit`."""
    rows = conn.execute(ALERTS, {"account": account_id, "limit": limit})
    return [StoredAlert(*row) for row in rows]


def account_alerts(database: Database, account_id: uuid.UUID, limit: int) -> list[StoredAlert]:
    """The account's alerts, newest first, at most `limit`."""
    with database.connection() as conn:
        return list_alerts(conn, account_id, limit)


def exhaustion_data(account_id: uuid.UUID, projection: MonthProjection) -> dict[str, object]:
    """`quota.exhaustion_projected`: the figures `GET /api/v1/usage/forecast` gives."""

    def day(value: date | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "account_id": str(account_id),
        "month": event_types.month_label(projection.first_day),
        "limit": projection.limit,
        "used": projection.used,
        "exhaustion_date": day(projection.exhaustion_date),
        "exhaustion_range80": {
            "earliest": day(projection.exhaustion_earliest),
            "latest": day(projection.exhaustion_latest),
            "probability": (
                None
                if projection.exhaustion_probability is None
                else round(projection.exhaustion_probability, 3)
            ),
        },
        "projected_total": round(projection.projected_total, 1),
        "projected_total_lower80": round(projection.projected_total_lower80, 1),
        "projected_total_upper80": round(projection.projected_total_upper80, 1),
    }


def raise_alerts(
    database: Database, account_id: uuid.UUID, projection: MonthProjection
) -> tuple[str, ...]:
    """Record the alerts this projection calls for (each at most once per account and month)."""
    if projection.limit is None:
        return ()
    due: list[AlertKind] = []
    if projection.projected_total >= ALERT_SHARE * projection.limit:
        due.append(ALERT_80_PERCENT)
    if projection.exhaustion_date is not None:
        due.append(ALERT_EXHAUSTION)
    if not due:
        return ()
    raised = []
    with database.connection() as conn:
        if projection.exhaustion_date is not None:
            # The webhook, once a month, in the same transaction as the alert it announces; the
            # workers' dispatch run sends it within seconds.
            notifications.notify(
                conn,
                account_id,
                event_types.EXHAUSTION_PROJECTED,
                event_types.month_label(projection.first_day),
                exhaustion_data(account_id, projection),
                datetime.now(UTC),
            )
        for kind in due:
            if record_alert(
                conn,
                account_id,
                projection.first_day,
                kind,
                limit=projection.limit,
                used=projection.used,
                projected_total=min(round(projection.projected_total), MAX_STORED_CALLS),
                exhaustion_date=projection.exhaustion_date,
            ):
                raised.append(kind)
    for kind in raised:
        logger.info("usage alert %s raised for account %s", kind, account_id)
    return tuple(raised)
