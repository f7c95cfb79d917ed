"""`GET /api/v1/usage/forecast`: shape and invariants, validation, stored-forecast reuse."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from flask.testing import FlaskClient

from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.usage import forecast_body, forecasts


def weekly_history(runtime: Runtime, customer: Customer, days: int, level: int = 60) -> None:
    """`days` full days before today of weekday-heavy traffic."""
    today = datetime.now(UTC).date()
    rng = np.random.default_rng(1)
    calls = {}
    for back in range(1, days + 1):
        day = today - timedelta(days=back)
        calls[day] = int(rng.poisson(level if day.weekday() < 5 else level / 4))
    seed_calls(runtime, customer.account.id, calls, key_id=uuid.UUID(customer.key_id))


def forecast_rows(runtime: Runtime) -> list[tuple]:
    with runtime.database.connection() as conn:
        return conn.execute(
            "SELECT account_id, horizon_days, requested_model, generated_at FROM forecasts"
        ).fetchall()


def test_forecast_shape_and_invariants(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    weekly_history(runtime, customer, 70)
    response = client.get("/api/v1/usage/forecast?days=45", headers=customer.auth)
    assert response.status_code == 200
    body = response.get_json()
    today = datetime.now(UTC).date()
    assert body["model"] in ("linear", "seasonal") and body["requested_model"] == "auto"
    assert body["history_days"] == 70 and body["days"] == 45
    dates = [date.fromisoformat(d["date"]) for d in body["daily"]]
    assert dates == [today + timedelta(days=i) for i in range(1, 46)]
    for d in body["daily"]:
        assert 0 <= d["lower95"] <= d["lower80"] <= d["predicted"] <= d["upper80"] <= d["upper95"]
    weekdays = [
        d["predicted"] for d in body["daily"] if date.fromisoformat(d["date"]).weekday() < 5
    ]
    weekends = [
        d["predicted"] for d in body["daily"] if date.fromisoformat(d["date"]).weekday() >= 5
    ]
    assert np.mean(weekends) < 0.5 * np.mean(weekdays)
    month = body["current_month"]
    assert month["limit"] == 50000 and month["start"] == today.replace(day=1).isoformat()
    assert month["used"] == sum(
        n for d, n in _seeded_counts(runtime, customer).items() if d >= today.replace(day=1)
    )
    assert (
        month["projected_total_lower80"]
        <= month["projected_total"]
        <= month["projected_total_upper80"]
    )
    assert month["projected_total"] >= month["used"]
    assert month["projected_remaining"] == pytest.approx(50000 - month["projected_total"], abs=0.2)
    assert body["exhaustion_date"] is None
    assert body["exhaustion_range80"]["probability"] == 0.0
    # The cheapest plan that covers the upper 80% bound: the one below it would not.
    limits = {"free": 1000, "starter": 5000, "developer": 50000}
    recommended = body["recommended_plan"]
    assert recommended["monthly_limit"] == limits[recommended["name"]]
    assert recommended["monthly_limit"] >= month["projected_total_upper80"]
    cheaper = [limit for limit in limits.values() if limit < recommended["monthly_limit"]]
    assert all(limit < month["projected_total_upper80"] for limit in cheaper)
    accuracy = body["accuracy"]
    assert accuracy["method"] == "rolling_origin" and accuracy["horizon_days"] == 30
    assert accuracy["mase"] > 0 and accuracy["total_error_pct"] is not None


def _seeded_counts(runtime: Runtime, customer: Customer) -> dict[date, int]:
    with runtime.database.connection() as conn:
        rows = conn.execute(
            "SELECT day, sum(calls) FROM usage_daily WHERE account_id = %s GROUP BY day",
            (customer.account.id,),
        ).fetchall()
    return {day: int(n) for day, n in rows}


def test_heavy_usage_projects_exhaustion_and_a_bigger_plan(runtime: Runtime) -> None:
    # Through the service with a fixed "now": over the API the account would already be refused.
    customer = new_customer(runtime, plan="free")
    now = datetime(2026, 4, 10, 6, tzinfo=UTC)
    seed_calls(
        runtime, customer.account.id, {now.date() - timedelta(days=n): 100 for n in range(1, 40)}
    )
    body = forecasts.get_forecast(
        runtime.database, customer.account.id, days=7, model="auto", now=now
    ).model_dump(mode="json")
    month = body["current_month"]
    # 900 calls by April 9th at 100 a day: the 1,000 calls run out on April 10th or 11th.
    assert (month["used"], month["limit"]) == (900, 1000)
    assert body["exhaustion_date"] in ("2026-04-10", "2026-04-11")
    assert body["exhaustion_range80"]["probability"] > 0.9
    assert month["projected_total"] == pytest.approx(3000, rel=0.15)
    assert month["projected_remaining"] == 0.0
    assert body["recommended_plan"]["name"] == "starter"
    assert body["daily"][0]["date"] == "2026-04-11"


def test_unlimited_plan_has_no_exhaustion(client: FlaskClient, runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="enterprise")
    weekly_history(runtime, customer, 30, level=5000)
    body = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    assert body["current_month"]["limit"] is None
    assert body["current_month"]["projected_remaining"] is None
    assert body["exhaustion_date"] is None
    assert body["exhaustion_range80"] == {"earliest": None, "latest": None, "probability": None}
    assert len(body["daily"]) == 30


def test_new_account_without_history(client: FlaskClient, customer: Customer) -> None:
    body = client.get("/api/v1/usage/forecast?days=7", headers=customer.auth).get_json()
    assert body["model"] == "none" and body["history_days"] == 0
    assert body["note"] and body["accuracy"] is None
    assert all(d["predicted"] == 0 and d["upper95"] == 0 for d in body["daily"])
    assert body["current_month"]["projected_total"] == 0


def test_short_history_uses_the_simple_method(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    weekly_history(runtime, customer, 5)
    body = client.get("/api/v1/usage/forecast?model=seasonal", headers=customer.auth).get_json()
    assert body["model"] == "mean" and body["requested_model"] == "seasonal"
    assert "two weeks" in body["note"]


@pytest.mark.parametrize("model", ["linear", "seasonal"])
def test_a_requested_model_runs(
    client: FlaskClient, runtime: Runtime, customer: Customer, model: str
) -> None:
    weekly_history(runtime, customer, 40)
    body = client.get(
        f"/api/v1/usage/forecast?days=7&model={model}", headers=customer.auth
    ).get_json()
    assert body["model"] == model and body["requested_model"] == model


def test_stored_forecast_is_reused_the_same_day(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    weekly_history(runtime, customer, 30)
    first = client.get("/api/v1/usage/forecast?days=14", headers=customer.auth).get_json()
    # More calls today, short of 2% of the limit, do not change today's answer (calls for past
    # days do: tests/api/usage/test_forecast_freshness.py)...
    seed_calls(runtime, customer.account.id, {datetime.now(UTC).date(): 500})
    again = client.get("/api/v1/usage/forecast?days=14", headers=customer.auth).get_json()
    assert again == first
    assert len(forecast_rows(runtime)) == 1
    # ...but another horizon or model is a different forecast, computed and stored on demand.
    other = client.get(
        "/api/v1/usage/forecast?days=7&model=linear", headers=customer.auth
    ).get_json()
    assert other["generated_at"] != first["generated_at"]
    assert len(forecast_rows(runtime)) == 2


def test_a_stored_forecast_of_an_older_body_version_is_recomputed(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    weekly_history(runtime, customer, 20)
    first = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    with runtime.database.connection() as conn:
        conn.execute(
            "UPDATE forecasts SET schema_version = %s", (forecast_body.SCHEMA_VERSION - 1,)
        )
    again = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    assert again["generated_at"] != first["generated_at"]
    assert len(forecast_rows(runtime)) == 1  # replaced, at today's version
    with runtime.database.connection() as conn:
        (version,) = conn.execute("SELECT schema_version FROM forecasts").fetchone() or (None,)
    assert version == forecast_body.SCHEMA_VERSION


@pytest.mark.parametrize(
    "corruption",
    [
        "UPDATE forecasts SET body = body - 'accuracy'",  # a field the body no longer has
        """UPDATE forecasts SET body = body || '{"model": "seasonal_naive"}'""",  # a lost value
        """UPDATE forecasts SET body = body || '{"surprise": 1}'""",  # a field it never had
    ],
)
def test_a_stored_forecast_that_no_longer_validates_is_recomputed_not_a_500(
    client: FlaskClient, runtime: Runtime, customer: Customer, corruption: str
) -> None:
    # Guards the defect where a deploy changing the body's shape made every forecast stored
    # that day a 500 (the stored JSON was re-validated by the strict response model).
    weekly_history(runtime, customer, 20)
    first = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    with runtime.database.connection() as conn:
        conn.execute(corruption)
    response = client.get("/api/v1/usage/forecast", headers=customer.auth)
    assert response.status_code == 200
    again = response.get_json()
    assert again["generated_at"] != first["generated_at"]
    assert set(again) == set(first)


def test_plan_change_makes_the_stored_forecast_stale(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    weekly_history(runtime, customer, 20)
    first = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    service.set_plan(runtime, customer.account.id, "starter")
    again = client.get("/api/v1/usage/forecast", headers=customer.auth).get_json()
    assert first["current_month"]["limit"] == 50000
    assert again["current_month"]["limit"] == 5000
    assert len(forecast_rows(runtime)) == 1  # replaced, not added


@pytest.mark.parametrize(
    "query",
    [
        "days=6",
        "days=91",
        "days=0",
        "days=-7",
        "days=abc",
        "days=7.5",
        "days=1e1",
        "days=",
        "days=%2030",
        "days=99999999999999999999999",
        "days=7&days=8",
    ],
)
def test_days_out_of_range_is_a_400_naming_the_bounds(
    client: FlaskClient, customer: Customer, query: str
) -> None:
    response = client.get(f"/api/v1/usage/forecast?{query}", headers=customer.auth)
    assert response.status_code == 400
    body = response.get_json()
    assert body["errors"][0]["field"] == "days"
    if "&" not in query:
        assert (body["minimum"], body["maximum"]) == (7, 90)
        assert "7 to 90" in body["detail"]


@pytest.mark.parametrize("query", ["model=arima", "model=", "model=AUTO"])
def test_unknown_model_is_a_400(client: FlaskClient, customer: Customer, query: str) -> None:
    response = client.get(f"/api/v1/usage/forecast?{query}", headers=customer.auth)
    assert response.status_code == 400
    assert response.get_json()["allowed"] == ["auto", "linear", "seasonal"]


@pytest.mark.parametrize("days", [7, 90])
def test_bounds_are_inclusive(client: FlaskClient, customer: Customer, days: int) -> None:
    body = client.get(f"/api/v1/usage/forecast?days={days}", headers=customer.auth).get_json()
    assert len(body["daily"]) == days


def test_a_new_accounts_partial_first_day_is_not_read_as_a_drop(runtime: Runtime) -> None:
    customer = new_customer(runtime)
    now = datetime(2026, 4, 20, 9, tzinfo=UTC)
    created = datetime(2026, 3, 22, 21, 30, tzinfo=UTC)  # two and a half hours before midnight
    with runtime.database.connection() as conn:
        conn.execute(
            "UPDATE accounts SET created_at = %s WHERE id = %s", (created, customer.account.id)
        )
    calls = {created.date(): 9}
    calls |= {created.date() + timedelta(days=n): 100 for n in range(1, 29)}
    seed_calls(runtime, customer.account.id, calls)
    body = forecasts.get_forecast(
        runtime.database, customer.account.id, days=7, model="linear", now=now
    ).model_dump(mode="json")
    assert body["history_days"] == 28  # the creation day is left out
    for day in body["daily"]:
        assert day["predicted"] == pytest.approx(100, rel=0.1)
