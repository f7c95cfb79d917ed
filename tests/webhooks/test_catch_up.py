"""The catch-up run: quota events PostgreSQL proves and no web process recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.accounts import new_customer
from tests.support.events import seed_calls
from timo_hub.platform import months
from timo_hub.platform.runtime import Runtime
from timo_hub.webhooks import catch_up, endpoints


def _set_used(runtime: Runtime, account_id: object, used: int, now: datetime) -> None:
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO quota_usage (account_id, period, used) VALUES (%s, %s, %s) "
            "ON CONFLICT (account_id, period) DO UPDATE SET used = EXCLUDED.used",
            (account_id, months.month_start(now), used),
        )


def _recorded(runtime: Runtime, account_id: object) -> list[tuple[str, str]]:
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT type, dedupe_key FROM account_notifications WHERE account_id = %s "
            "ORDER BY type, dedupe_key",
            (account_id,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_thresholds_a_killed_web_process_never_recorded_are_recorded_once(
    runtime: Runtime,
) -> None:
    """Guards against a crossing lost with the web process that noticed it (killed between
    noticing and recording): PostgreSQL's count proves it, and the run records it, once."""
    now = datetime.now(UTC)
    customer = new_customer(runtime, "free")
    quiet = new_customer(runtime, "free")
    endpoints.create(
        runtime.database,
        runtime.settings,
        customer.account.id,
        url="http://127.0.0.1:9/hook",
        events=["quota.threshold_reached"],
        description="",
        now=now,
    )
    _set_used(runtime, customer.account.id, 850, now)
    _set_used(runtime, quiet.account.id, 499, now)

    first = catch_up.catch_up(runtime.database, now)
    again = catch_up.catch_up(runtime.database, now)

    label = now.strftime("%Y-%m")
    assert _recorded(runtime, customer.account.id) == [
        ("quota.threshold_reached", f"{label}:50"),
        ("quota.threshold_reached", f"{label}:80"),
    ]
    assert _recorded(runtime, quiet.account.id) == []
    assert (first.thresholds, len(first.delivery_ids)) == (2, 2)
    assert (again.thresholds, again.delivery_ids) == (0, [])


def test_a_refusal_in_the_event_log_at_the_limit_is_recorded_as_exhausted(
    runtime: Runtime,
) -> None:
    now = datetime.now(UTC)
    customer = new_customer(runtime, "free")
    _set_used(runtime, customer.account.id, 1000, now)
    assert catch_up.catch_up(runtime.database, now).exhausted == 0  # no refusal yet
    seed_calls(runtime, customer.account.id, {now.date(): 1}, status=429)
    assert catch_up.catch_up(runtime.database, now).exhausted == 1
    assert catch_up.catch_up(runtime.database, now).exhausted == 0
    assert ("quota.exhausted", now.strftime("%Y-%m")) in _recorded(runtime, customer.account.id)


def test_early_in_a_month_last_months_missed_crossings_are_recorded_too(
    runtime: Runtime,
) -> None:
    """Guards against a crossing in a month's last seconds, noticed by a process killed before
    recording it, being lost because the next run already looks at the new month."""
    customer = new_customer(runtime, "free")
    last_month_end = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    _set_used(runtime, customer.account.id, 820, last_month_end)
    soon_after = datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC)
    assert catch_up.catch_up(runtime.database, soon_after).thresholds == 2
    assert ("quota.threshold_reached", "2026-11:80") in _recorded(runtime, customer.account.id)
    # Later in the month only the month itself is looked at.
    other = new_customer(runtime, "free")
    _set_used(runtime, other.account.id, 820, last_month_end)
    later = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert catch_up.catch_up(runtime.database, later).thresholds == 0
