"""Projections refreshed during the day (`timo_hub.usage.projection_refresh`), on real PostgreSQL:
which accounts are due, and that refreshing one raises the alert its new projection calls for."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.usage import forecasts, projection_refresh


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def history(runtime: Runtime, customer: Customer, today: date, per_day: int) -> None:
    """`per_day` calls on each of the 40 days before `today`, ingested the day before it (so
    before that night's forecast: not a change of the past the refresh should act on)."""
    seed_calls(
        runtime, customer.account.id, {today - timedelta(days=n): per_day for n in range(1, 41)}
    )
    ingested_at(runtime, customer.account.id, at(today - timedelta(days=1), 23))


def seed_today(
    runtime: Runtime, account_id: uuid.UUID, today: date, calls: int, hour: int = 12
) -> None:
    """`calls` calls on `today`, ingested that day: not a change of the past, though `today`
    may be a day the real clock has left behind (ingestion notes those with the real time)."""
    seed_calls(runtime, account_id, {today: calls}, hour=hour)
    with runtime.database.connection() as conn:
        conn.execute(
            "DELETE FROM usage_history_changes WHERE account_id = %s AND changed_at > %s",
            (account_id, at(today, 23, 59)),
        )


def ingested_at(runtime: Runtime, account_id: uuid.UUID, moment: datetime) -> None:
    """Date the notes of a changed past that seeding just left (ingestion stamps them with the
    real clock, while these tests drive `now`)."""
    with runtime.database.connection() as conn:
        conn.execute(
            "UPDATE usage_history_changes SET changed_at = %s WHERE account_id = %s",
            (moment, account_id),
        )


def alerts(runtime: Runtime, account_id: uuid.UUID) -> dict[str, tuple[date, date]]:
    """The account's alerts: kind -> (month, the day it was raised)."""
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT kind, month, (raised_at AT TIME ZONE 'UTC')::date FROM usage_alerts "
            "WHERE account_id = %s",
            (account_id,),
        )
        return {kind: (month, raised) for kind, month, raised in rows}


def test_a_surge_today_is_announced_today(runtime: Runtime) -> None:
    # Today for real: the alert must be dated the day the surge made exhaustion likely.
    today = datetime.now(UTC).date()
    surging, calm = new_customer(runtime, plan="free"), new_customer(runtime, plan="free")
    unlimited = new_customer(runtime, plan="enterprise")
    suspended = new_customer(runtime, plan="free")
    for customer in (surging, calm, unlimited, suspended):
        history(runtime, customer, today, per_day=10)
    # The nightly run: 10 calls a day, about 300 of 1,000 this month; nothing to announce.
    for customer in (surging, calm, unlimited, suspended):
        nightly = forecasts.run_nightly(runtime.database, customer.account.id, at(today, 0, 20))
        assert nightly.alerts_raised == ()
    service.set_status(runtime, suspended.account.id, "suspended")

    # By noon: 900 calls instead of about 5, ingested; the calm account made its usual few.
    for customer in (surging, unlimited, suspended):
        seed_today(runtime, customer.account.id, today, 900, hour=11)
    seed_today(runtime, calm.account.id, today, 5, hour=11)

    noon = at(today, 12, 30)
    assert projection_refresh.due_accounts(runtime.database, noon) == [surging.account.id]
    outcome = projection_refresh.refresh(runtime.database, noon)
    assert (outcome.due, outcome.refreshed, outcome.failed) == (1, 1, 0)
    assert outcome.alerts_raised >= 1
    raised = alerts(runtime, surging.account.id)
    assert raised["projected_exhaustion"] == (today.replace(day=1), datetime.now(UTC).date())
    assert alerts(runtime, calm.account.id) == {}

    # Refreshed: its band now starts from the surge, and nothing is due until it moves again.
    assert projection_refresh.due_accounts(runtime.database, noon + timedelta(minutes=10)) == []
    seed_today(runtime, surging.account.id, today, 30, hour=12)
    assert projection_refresh.due_accounts(runtime.database, noon + timedelta(minutes=20)) == [
        surging.account.id
    ]


def test_usage_inside_the_band_is_not_due(runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="starter")
    today = date(2026, 4, 14)
    history(runtime, customer, today, per_day=60)  # 780 of 5,000 by the 13th, 1,800 projected
    forecasts.run_nightly(runtime.database, customer.account.id, at(today, 0, 20))
    # A busier day than most, but well within what the month's upper band allows so far.
    seed_today(runtime, customer.account.id, today, 120, hour=15)
    for hour in (16, 20, 23):
        assert projection_refresh.due_accounts(runtime.database, at(today, hour)) == []
    # Past the band by more than the slack (2% of 5,000 calls): due.
    seed_today(runtime, customer.account.id, today, 200, hour=16)
    assert projection_refresh.due_accounts(runtime.database, at(today, 16, 10)) == [
        customer.account.id
    ]


def test_past_half_its_quota_an_account_is_refreshed_hourly(runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="free")
    today = date(2026, 4, 20)
    history(runtime, customer, today, per_day=30)  # 570 of 1,000 by the 19th
    nightly = forecasts.run_nightly(runtime.database, customer.account.id, at(today, 0, 20))
    assert nightly.alerts_raised == ("projected_80_percent",)  # 900 projected

    assert projection_refresh.due_accounts(runtime.database, at(today, 1, 19)) == []
    assert projection_refresh.due_accounts(runtime.database, at(today, 1, 20)) == [
        customer.account.id
    ]
    refreshed_at = at(today, 1, 21)
    assert projection_refresh.refresh(runtime.database, refreshed_at).refreshed == 1
    assert projection_refresh.due_accounts(runtime.database, at(today, 2, 20)) == []
    assert projection_refresh.due_accounts(runtime.database, at(today, 2, 21)) == [
        customer.account.id
    ]


def test_below_half_its_quota_an_old_forecast_is_not_due(runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="free")
    today = date(2026, 4, 10)
    history(runtime, customer, today, per_day=30)  # 270 of 1,000 by the 9th
    forecasts.run_nightly(runtime.database, customer.account.id, at(today, 0, 20))
    assert projection_refresh.due_accounts(runtime.database, at(today, 23, 50)) == []


def test_a_forecast_made_by_a_reader_gets_its_alerts(runtime: Runtime) -> None:
    """A forecast recomputed for the API or the dashboard is stored but raises nothing, and
    resets the band: the refresh raises what it calls for."""
    customer = new_customer(runtime, plan="free")
    today = date(2026, 4, 10)
    history(runtime, customer, today, per_day=45)  # 405 by the 9th, 1,350 projected
    now = at(today, 9)
    body = forecasts.get_forecast(
        runtime.database, customer.account.id, days=30, model="auto", now=now
    )
    assert body.exhaustion_date is not None
    assert projection_refresh.due_accounts(runtime.database, now) == [customer.account.id]
    assert projection_refresh.refresh(runtime.database, now).alerts_raised == 2
    assert set(alerts(runtime, customer.account.id)) == {
        "projected_80_percent",
        "projected_exhaustion",
    }
    assert projection_refresh.due_accounts(runtime.database, now) == []


def test_an_account_without_a_forecast_today_is_due_once_its_calls_pass_the_slack(
    runtime: Runtime,
) -> None:
    # Not reached by the nightly run yet: no band, only the slack (2% of 1,000 calls). Past half
    # its quota, it is still left to the nightly run while today's calls stay within the slack.
    customer = new_customer(runtime, plan="free")
    today = date(2026, 4, 20)
    history(runtime, customer, today, per_day=30)  # 570 of 1,000 by the 19th
    seed_today(runtime, customer.account.id, today, 20)
    assert projection_refresh.due_accounts(runtime.database, at(today, 0, 10)) == []
    seed_today(runtime, customer.account.id, today, 1)
    assert projection_refresh.due_accounts(runtime.database, at(today, 0, 10)) == [
        customer.account.id
    ]
    projection_refresh.refresh(runtime.database, at(today, 0, 10))
    assert projection_refresh.due_accounts(runtime.database, at(today, 0, 20)) == []


def test_the_most_urgent_go_first_and_a_run_ends_on_time(runtime: Runtime) -> None:
    today = date(2026, 4, 20)
    hourly, surging = new_customer(runtime, plan="free"), new_customer(runtime, plan="free")
    history(runtime, hourly, today, per_day=30)  # past half its quota
    history(runtime, surging, today, per_day=10)
    for customer in (hourly, surging):
        forecasts.run_nightly(runtime.database, customer.account.id, at(today, 0, 20))
    seed_today(runtime, surging.account.id, today, 300, hour=2)
    now = at(today, 3)
    assert projection_refresh.due_accounts(runtime.database, now) == [
        surging.account.id,
        hourly.account.id,
    ]
    skipped = projection_refresh.refresh(runtime.database, now, max_seconds=0)
    assert (skipped.due, skipped.refreshed, skipped.deferred) == (2, 0, 2)


def test_an_import_of_earlier_days_is_announced_the_same_day(runtime: Runtime) -> None:
    """Guards against a changed past going unnoticed until the next night: an import that makes
    exhaustion likely touched neither today's usage nor the quota's ledger, so no other rule of
    the refresh saw it."""
    customer = new_customer(runtime, plan="free")
    today = date(2026, 4, 14)
    history(runtime, customer, today, per_day=10)
    nightly = forecasts.run_nightly(runtime.database, customer.account.id, at(today, 0, 20))
    assert nightly.alerts_raised == ()
    assert projection_refresh.due_accounts(runtime.database, at(today, 10)) == []
    seed_calls(runtime, customer.account.id, {today.replace(day=d): 50 for d in range(1, 14)})
    ingested_at(runtime, customer.account.id, at(today, 11))
    assert projection_refresh.due_accounts(runtime.database, at(today, 12)) == [customer.account.id]
    projection_refresh.refresh(runtime.database, at(today, 12))
    assert "projected_exhaustion" in alerts(runtime, customer.account.id)
    assert projection_refresh.due_accounts(runtime.database, at(today, 12, 10)) == []
