"""Projected-quota alerts: raised by the nightly run once per month and kind, listed by the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient

from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from timo_hub.platform.runtime import Runtime
from timo_hub.usage import forecasts


def test_nightly_run_raises_each_alert_once(client: FlaskClient, runtime: Runtime) -> None:
    heavy = new_customer(runtime, plan="free")
    calm = new_customer(runtime, plan="free")
    # A past month, so that this month's quota still admits the calls to the API below.
    now = datetime(2026, 4, 10, 1, tzinfo=UTC)
    today = now.date()
    seed_calls(runtime, heavy.account.id, {today - timedelta(days=n): 80 for n in range(1, 40)})
    seed_calls(runtime, calm.account.id, {today - timedelta(days=n): 1 for n in range(1, 40)})

    first = forecasts.run_nightly(runtime.database, heavy.account.id, now)
    second = forecasts.run_nightly(runtime.database, heavy.account.id, now + timedelta(hours=1))
    quiet = forecasts.run_nightly(runtime.database, calm.account.id, now)

    assert set(first.alerts_raised) == {"projected_80_percent", "projected_exhaustion"}
    assert second.alerts_raised == ()
    assert quiet.alerts_raised == ()
    body = client.get("/api/v1/usage/alerts", headers=heavy.auth).get_json()
    assert sorted(a["kind"] for a in body["alerts"]) == [
        "projected_80_percent",
        "projected_exhaustion",
    ]
    for alert in body["alerts"]:
        assert alert["month"] == today.replace(day=1).isoformat()
        assert alert["limit"] == 1000
        assert alert["projected_total"] >= 800
    exhaustion = next(a for a in body["alerts"] if a["kind"] == "projected_exhaustion")
    assert exhaustion["exhaustion_date"] is not None
    assert client.get("/api/v1/usage/alerts", headers=calm.auth).get_json() == {"alerts": []}


def test_unlimited_plans_get_no_alerts(runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="enterprise")
    today = datetime.now(UTC).date()
    seed_calls(runtime, customer.account.id, {today - timedelta(days=n): 500 for n in range(1, 20)})
    assert (
        forecasts.run_nightly(
            runtime.database, customer.account.id, datetime.now(UTC)
        ).alerts_raised
        == ()
    )


def test_alerts_need_a_key(client: FlaskClient, customer: Customer) -> None:
    assert client.get("/api/v1/usage/alerts").status_code == 401
    assert client.get("/api/v1/usage/alerts", headers=customer.auth).status_code == 200
