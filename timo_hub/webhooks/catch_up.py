"""The backstop of `quota_watch`: quota events PostgreSQL proves happened but nobody recorded.

A web process records a crossing within milliseconds of noticing it; one killed in between leaves
it here. Every minute one grouped query finds, for this month, thresholds the durable count
(`quota_usage`) has reached and first refusals the event log holds (`usage_daily`, status 429 at
or past the limit) without their notification, and records them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from timo_hub.platform import months
from timo_hub.platform.db import Database
from timo_hub.webhooks import event_types, notifications

# How long into a month the run still looks at the month before.
LAST_MONTH_TOO = timedelta(hours=1)

MISSING_THRESHOLDS = """
SELECT q.account_id, q.used, l.monthly_limit, t.pct
FROM quota_usage q
JOIN accounts a ON a.id = q.account_id
JOIN account_limits l ON l.account_id = a.id
CROSS JOIN LATERAL unnest(a.alert_thresholds) AS t (pct)
WHERE q.period = %(month)s AND l.monthly_limit > 0
  AND q.used * 100 >= t.pct::bigint * l.monthly_limit
  AND NOT EXISTS (
      SELECT 1 FROM account_notifications n
      WHERE n.account_id = q.account_id AND n.type = %(type)s
        AND n.dedupe_key = %(label)s || ':' || t.pct)
ORDER BY q.account_id, t.pct
"""
MISSING_EXHAUSTED = """
SELECT q.account_id, q.used, l.monthly_limit
FROM quota_usage q
JOIN accounts a ON a.id = q.account_id
JOIN account_limits l ON l.account_id = a.id
WHERE q.period = %(month)s AND q.used >= l.monthly_limit
  AND EXISTS (
      SELECT 1 FROM usage_daily u
      WHERE u.account_id = q.account_id AND u.day >= %(month)s AND u.day < %(next)s
        AND u.status = 429)
  AND NOT EXISTS (
      SELECT 1 FROM account_notifications n
      WHERE n.account_id = q.account_id AND n.type = %(type)s AND n.dedupe_key = %(label)s)
"""


@dataclass(frozen=True)
class CatchUp:
    """What one run recorded, and the deliveries it made (to queue)."""

    thresholds: int
    exhausted: int
    delivery_ids: list[str]


def catch_up(database: Database, now: datetime) -> CatchUp:
    """Record this month's missed quota events (and, early in a month, last month's: a crossing
    in its last seconds may not have been recorded by then)."""
    this_month = months.month_start(now)
    checked = [this_month]
    if now - datetime(this_month.year, this_month.month, 1, tzinfo=UTC) < LAST_MONTH_TOO:
        checked.append(months.add_months(this_month, -1))
    total = CatchUp(0, 0, [])
    for first_day in checked:
        found = _catch_up_month(database, first_day, now)
        total = CatchUp(
            total.thresholds + found.thresholds,
            total.exhausted + found.exhausted,
            total.delivery_ids + found.delivery_ids,
        )
    return total


def _catch_up_month(database: Database, first_day: date, now: datetime) -> CatchUp:
    label = event_types.month_label(first_day)
    ids: list[str] = []
    thresholds = exhausted = 0
    with database.connection() as conn:
        missing = conn.execute(
            MISSING_THRESHOLDS,
            {"month": first_day, "label": label, "type": event_types.THRESHOLD_REACHED},
        ).fetchall()
        for account_id, used, limit, pct in missing:
            made = notifications.threshold_reached(
                conn, uuid.UUID(str(account_id)), first_day, limit, used, pct, now
            )
            thresholds += 1
            ids += made
        refused = conn.execute(
            MISSING_EXHAUSTED,
            {
                "month": first_day,
                "next": months.next_month(first_day),
                "label": label,
                "type": event_types.EXHAUSTED,
            },
        ).fetchall()
        for account_id, used, limit in refused:
            ids += notifications.exhausted(
                conn, uuid.UUID(str(account_id)), first_day, limit, used, now
            )
            exhausted += 1
    return CatchUp(thresholds, exhausted, ids)
