"""Projections refreshed during the day: which accounts are due, and refreshing them.

The nightly run (00:20 UTC) forecasts every active account; this module finds, in one statement
over every active account with a monthly limit, those whose stored default forecast (today's, of
the default horizon and model) no longer says where their month is heading, and recomputes them
as the nightly run does (`forecasts.run_nightly`), alerts included. An account is due when:

* **its usage runs ahead of the forecast's band**: the calls made since the forecast exceed what
  the month's upper 80% projection allowed for the time since, by more than a slack. The band is
  drawn straight from where the month stood when the forecast was made (`current_month.used` at
  `generated_at`) to `projected_total_upper80` at the month's end, so the allowance by `now` is
  that remaining upper total pro-rated over the time left in the month. The slack is what makes
  a stored forecast stale for a reader (`forecasts.STALE_USED_SHARE` of the limit, at least
  `forecasts.STALE_USED_CALLS`). Without a forecast today (an account created today, or one the
  nightly run has not reached), the band is empty and today's calls are weighed against the
  slack alone;
* **its past changed after the forecast was made**: ingestion notes every account whose events
  for an earlier UTC day arrived (`usage_history_changes`: an import, a backfill, late events),
  so an exhaustion an import makes likely is announced that day;
* **its stored forecast calls for an alert not raised**: a forecast recomputed for a reader (the
  API or the dashboard) is stored, and restarts the band, but raises nothing;
* **it is past half its quota and its forecast is over an hour old** (the month's calls: the
  larger of the quota's ledger, `quota_usage`, and the forecast's month plus today's calls since).
  Accounts without a forecast today are left to the nightly run here, so that the refresh does
  not redo the nightly run's work while it is still under way.

The calls since the forecast come from today's `usage_daily` rows alone (the row keeps the calls
of its day that it counted, `used_today`), so the statement reads one day of usage, not the
month's. Late events for past days are found through the notes ingestion leaves (above).

A run refreshes the due accounts most urgent first (ahead of the band or an alert not raised,
then the oldest forecasts) and stops starting new ones after `MAX_RUN_SECONDS`, so that it ends
before the next run begins; what it left is still due then.

Reads accounts, plans, forecasts, usage, the quota's ledger and alerts; writes only through
`forecasts`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from analytics.parameters import DEFAULT_HORIZON_DAYS, DEFAULT_MODEL
from events import event_log
from timo_hub.platform import months
from timo_hub.platform.db import Database
from timo_hub.quota.counting import COUNTED_STATUS
from timo_hub.usage import forecasts
from timo_hub.usage.alerts import ALERT_80_PERCENT, ALERT_EXHAUSTION, ALERT_SHARE
from timo_hub.usage.forecast_body import SCHEMA_VERSION

logger = logging.getLogger(__name__)

# Accounts past this share of their limit are refreshed at least this often.
HOURLY_SHARE = 0.5
HOURLY_AGE = timedelta(hours=1)
# A run starts no new account after this long: it is scheduled every ten minutes.
MAX_RUN_SECONDS = 480.0
# Notes of changed pasts are kept this long: longer than any forecast of the day is old.
HISTORY_CHANGES_KEPT = timedelta(days=2)

DUE_ACCOUNTS = f"""
WITH today_calls AS (
    SELECT account_id, sum(calls)::bigint AS calls FROM usage_daily
    WHERE day = %(today)s AND {COUNTED_STATUS}
    GROUP BY account_id
), standing AS (
    SELECT a.id, l.monthly_limit AS quota, f.generated_at,
           (f.body -> 'current_month' ->> 'used')::bigint AS used_then,
           (f.body -> 'current_month' ->> 'projected_total')::float8 AS projected,
           (f.body -> 'current_month' ->> 'projected_total_upper80')::float8 AS upper80,
           f.body ->> 'exhaustion_date' AS exhaustion_date,
           coalesce(t.calls, 0) - coalesce(f.used_today, 0) AS since,
           coalesce(q.used, 0) AS ledger,
           greatest(%(slack_calls)s, %(slack_share)s * l.monthly_limit) AS slack
    FROM accounts a
    JOIN account_limits l ON l.account_id = a.id
    LEFT JOIN forecasts f
        ON f.account_id = a.id AND f.generated_on = %(today)s AND f.horizon_days = %(days)s
       AND f.requested_model = %(model)s AND f.schema_version = %(version)s
       AND f.monthly_limit = l.monthly_limit
    LEFT JOIN today_calls t ON t.account_id = a.id
    LEFT JOIN quota_usage q ON q.account_id = a.id AND q.period = %(month)s
    WHERE a.status = 'active' AND l.monthly_limit IS NOT NULL
), verdict AS (
    -- Cheap tests first: a stored body's figures are read only where those leave it open.
    SELECT s.id, s.generated_at,
           (
               s.since > s.slack AND s.since > s.slack + coalesce(
                   greatest(s.upper80 - s.used_then, 0)
                   * greatest(extract(epoch FROM %(now)s - s.generated_at), 0)
                   / extract(epoch FROM %(month_end)s - s.generated_at),
                   0)
           ) OR (
               -- Its past changed after it was made (an import, a backfill, late events).
               EXISTS (
                   SELECT FROM usage_history_changes c
                   WHERE c.account_id = s.id AND c.changed_at > s.generated_at)
           ) OR (
               s.exhaustion_date IS NOT NULL AND NOT EXISTS (
                   SELECT FROM usage_alerts u
                   WHERE u.account_id = s.id AND u.month = %(month)s AND u.kind = %(exhaustion)s)
           ) OR (
               -- The body's figures are rounded to a tenth of a call: only one surely past.
               s.projected - 0.1 >= %(alert_share)s * s.quota AND NOT EXISTS (
                   SELECT FROM usage_alerts u
                   WHERE u.account_id = s.id AND u.month = %(month)s AND u.kind = %(eighty)s)
           ) AS urgent,
           s.generated_at <= %(hour_ago)s AND (
               s.ledger >= %(hourly_share)s * s.quota
               OR s.used_then + s.since >= %(hourly_share)s * s.quota
           ) AS hourly
    FROM standing s
)
SELECT id FROM verdict
WHERE urgent OR hourly
ORDER BY urgent DESC, generated_at NULLS FIRST, id
"""


@dataclass(frozen=True)
class RefreshOutcome:
    """What one intraday refresh did."""

    due: int
    refreshed: int
    failed: int
    deferred: int
    """Due, but left to the next run when this one ran out of time."""
    alerts_raised: int


def due_accounts(database: Database, now: datetime) -> list[uuid.UUID]:
    """Accounts whose default forecast should be recomputed at `now`, most urgent first."""
    today = now.date()
    month = months.month_start(today)
    params = {
        "today": today,
        "month": month,
        "month_end": months.month_span(now)[1],
        "now": now,
        "hour_ago": now - HOURLY_AGE,
        "days": DEFAULT_HORIZON_DAYS,
        "model": DEFAULT_MODEL,
        "version": SCHEMA_VERSION,
        "slack_calls": forecasts.STALE_USED_CALLS,
        "slack_share": forecasts.STALE_USED_SHARE,
        "hourly_share": HOURLY_SHARE,
        "alert_share": ALERT_SHARE,
        "exhaustion": ALERT_EXHAUSTION,
        "eighty": ALERT_80_PERCENT,
    }
    with database.connection() as conn:
        return [row[0] for row in conn.execute(DUE_ACCOUNTS, params)]


def refresh(
    database: Database, now: datetime, *, max_seconds: float = MAX_RUN_SECONDS
) -> RefreshOutcome:
    """Recompute, store and alert on the default forecast of every account due at `now`.

    One account's failure is logged and the rest go on (`forecasts.run_all`); no account is
    started after `max_seconds`.
    """
    with database.connection() as conn:
        event_log.forget_history_changes(conn, now - HISTORY_CHANGES_KEPT)
    due = due_accounts(database, now)
    started = 0
    raised = 0

    def until_deadline(account_ids: Sequence[uuid.UUID]) -> Iterator[uuid.UUID]:
        nonlocal started
        deadline = time.monotonic() + max_seconds
        for account_id in account_ids:
            if time.monotonic() >= deadline:
                return
            started += 1
            yield account_id

    def done(account_id: uuid.UUID, outcome: forecasts.NightlyOutcome | None) -> None:
        nonlocal raised
        if outcome is not None:
            raised += len(outcome.alerts_raised)

    succeeded, failed = forecasts.run_all(database, until_deadline(due), now, on_done=done)
    return RefreshOutcome(len(due), succeeded, failed, len(due) - started, raised)
