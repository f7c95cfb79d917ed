"""The nightly forecast job, end to end: beat's task on a real worker and broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.accounts import new_customer
from tests.support.events import seed_calls
from tests.support.waiting import eventually
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from workers.celery_app import TimoCelery
from workers.schedule import BEAT_SCHEDULE
from workers.tasks import forecast_all


def test_nightly_entry_is_scheduled_in_utc() -> None:
    entry = BEAT_SCHEDULE["analytics-forecast-all"]
    assert entry["task"] == forecast_all.name
    assert entry["schedule"].hour == {0}


def test_forecast_all_stores_a_forecast_per_active_account(
    runtime: Runtime, celery_app: TimoCelery, celery_worker: object
) -> None:
    heavy = new_customer(runtime, plan="free")
    quiet = new_customer(runtime)
    suspended = new_customer(runtime)
    service.set_status(runtime, suspended.account.id, "suspended")
    today = datetime.now(UTC).date()
    # 60 calls a day: this month is projected past the free plan's 1,000 calls, whatever the date.
    seed_calls(runtime, heavy.account.id, {today - timedelta(days=n): 60 for n in range(1, 31)})

    celery_app.send_task(forecast_all.name)

    def stored() -> dict:
        with runtime.database.connection() as conn:
            rows = conn.execute(
                "SELECT account_id, horizon_days, requested_model, generated_on FROM forecasts"
            ).fetchall()
        return {row[0]: row[1:] for row in rows}

    def alerts() -> set[str]:
        with runtime.database.connection() as conn:
            rows = conn.execute(
                "SELECT kind FROM usage_alerts WHERE account_id = %s", (heavy.account.id,)
            )
            return {row[0] for row in rows}

    eventually(lambda: len(stored()) == 2 and bool(alerts()), timeout=60)
    rows = stored()
    assert set(rows) == {heavy.account.id, quiet.account.id}
    assert all(row == (30, "auto", today) for row in rows.values())
    assert "projected_80_percent" in alerts()
