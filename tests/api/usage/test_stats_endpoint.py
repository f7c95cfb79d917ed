"""`GET /api/v1/usage/stats`: sums over real ingested events, and period validation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from tests.support.accounts import Customer, new_customer
from tests.support.events import seed_calls
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime


def test_stats_match_the_events_ingested(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    today = datetime.now(UTC).date()
    first_key = uuid.UUID(customer.key_id)
    second = service.issue_key(runtime, customer.account.id, "batch jobs")
    account = customer.account.id
    day = lambda n: today - timedelta(days=n)  # noqa: E731
    seed_calls(runtime, account, {day(0): 3, day(2): 10, day(6): 4}, key_id=first_key)
    seed_calls(
        runtime, account, {day(2): 2}, key_id=first_key, status=404, endpoint="/auth/keys/{keyId}"
    )
    seed_calls(
        runtime, account, {day(1): 5}, key_id=second.key.id, status=429, endpoint="/account/quota"
    )
    seed_calls(runtime, account, {day(6): 1}, key_id=second.key.id, status=500, duration_ms=30.0)
    # Outside the 7 days (the previous period), and another account's calls on the same days.
    seed_calls(runtime, account, {day(7): 12, day(13): 8}, key_id=first_key)
    seed_calls(runtime, new_customer(runtime).account.id, {day(0): 99, day(2): 99})
    # A late event: it arrives now but occurred two days ago, so it counts on that day.
    seed_calls(runtime, account, {day(2): 1}, key_id=first_key, hour=23)

    response = client.get("/api/v1/usage/stats?period=7d", headers=customer.auth)

    assert response.status_code == 200
    body = response.get_json()
    assert (body["period"], body["start"], body["end"]) == (
        "7d",
        day(6).isoformat(),
        today.isoformat(),
    )
    assert body["total_calls"] == 3 + 10 + 4 + 2 + 5 + 1 + 1 == 26
    assert (body["successful"], body["client_errors"], body["server_errors"], body["rejected"]) == (
        3 + 10 + 4 + 1,
        2,
        1,
        5,
    )
    assert body["charged"] == 26 - 5 - 1  # not the 429s, not the 5xx
    daily = {d["date"]: (d["calls"], d["errors"], d["rejected"]) for d in body["daily"]}
    assert len(body["daily"]) == 7
    assert daily == {
        day(6).isoformat(): (5, 1, 0),
        day(5).isoformat(): (0, 0, 0),
        day(4).isoformat(): (0, 0, 0),
        day(3).isoformat(): (0, 0, 0),
        day(2).isoformat(): (13, 2, 0),
        day(1).isoformat(): (5, 0, 5),
        day(0).isoformat(): (3, 0, 0),
    }
    assert body["peak_day"] == {"date": day(2).isoformat(), "calls": 13}
    assert body["average_per_day"] == round(26 / 7, 2)
    assert body["average_duration_ms"] == pytest.approx((25 * 2.0 + 30.0) / 26, abs=1e-3)
    # Complete days (26 - 3 made today) against the 6 days before them (8; day 7 lines up with
    # today).
    assert body["change_vs_previous_period"] == pytest.approx((23 - 8) / 8 * 100, abs=0.05)
    assert body["by_endpoint"] == [
        {"endpoint": "/account", "calls": 19},
        {"endpoint": "/account/quota", "calls": 5},
        {"endpoint": "/auth/keys/{keyId}", "calls": 2},
    ]
    assert body["by_key"] == [
        {
            "key_id": customer.key_id,
            "name": "Default key",
            "prefix": customer.secret[:14],
            "calls": 20,
        },
        {
            "key_id": str(second.key.id),
            "name": "batch jobs",
            "prefix": second.key.prefix,
            "calls": 6,
        },
    ]


def test_default_period_is_30_days(client: FlaskClient, customer: Customer) -> None:
    body = client.get("/api/v1/usage/stats", headers=customer.auth).get_json()
    assert body["period"] == "30d" and len(body["daily"]) == 30
    assert body["total_calls"] == 0 and body["peak_day"] is None
    assert body["change_vs_previous_period"] is None


@pytest.mark.parametrize(
    "query", ["period=8d", "period=", "period=30D", "period=7d&period=30d", "period=%00"]
)
def test_other_periods_are_a_400_listing_the_allowed_values(
    client: FlaskClient, customer: Customer, query: str
) -> None:
    response = client.get(f"/api/v1/usage/stats?{query}", headers=customer.auth)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "/problems/bad-request"
    assert body["errors"][0]["field"] == "period"
    if "&" not in query:
        assert body["allowed"] == ["7d", "30d", "90d"]
    assert "X-RateLimit-Remaining" in response.headers


def test_requires_a_key(client: FlaskClient) -> None:
    assert client.get("/api/v1/usage/stats").status_code == 401
