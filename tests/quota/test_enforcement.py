"""Quota enforcement through the API: headers, 429, the quota endpoint, plans, recovery, months."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from api import close_app, create_app
from api.gate import QUOTA_EXTENSION
from tests.support.accounts import Customer, new_customer
from tests.support.waiting import eventually
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota.admission import counter_key
from timo_hub.quota.enforcer import MONTH_END_SPREAD_SECONDS
from timo_hub.quota.period import period_containing

QUOTA = "/api/v1/account/quota"
# Frozen instants lie in the real current month: Redis expires counters by its own clock, so a
# counter of a month long past would vanish at once.
THIS_MONTH = period_containing(datetime.now(UTC))
NOW = THIS_MONTH.start + timedelta(days=14, hours=12)
NEXT_MONTH = period_containing(THIS_MONTH.end)
RESET = THIS_MONTH.reset_epoch


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def frozen() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def seed_ledger(runtime: Runtime, account_id: uuid.UUID, used: int, when: datetime = NOW) -> None:
    """Record earlier usage in the durable ledger (Redis has no counter yet)."""
    period = period_containing(when)
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO quota_usage (account_id, period, used) VALUES (%s, %s, %s)",
            (account_id, period.first_day, used),
        )
    assert runtime.redis.get(counter_key(account_id, period)) is None


def _headers(response) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    h = response.headers
    return h["X-RateLimit-Limit"], h["X-RateLimit-Remaining"], h["X-RateLimit-Reset"]


def test_the_quota_endpoint_counts_itself_and_agrees_with_its_headers(
    client: FlaskClient, customer: Customer, frozen: object
) -> None:
    first = client.get(QUOTA, headers=customer.auth)
    second = client.get(QUOTA, headers=customer.auth)
    assert first.status_code == second.status_code == 200
    body = second.get_json()
    assert body == {
        "limit": 50000,
        "used": 2,
        "remaining": 49998,
        "reset": RESET,
        "period_start": _iso(THIS_MONTH.start),
        "period_end": _iso(THIS_MONTH.end),
        "burst": {
            "limit": 1000,
            "window_seconds": 60,
            "used": 2,
            "remaining": 998,
            "reset": body["burst"]["reset"],
        },
    }
    assert _headers(second) == ("50000", "49998", str(RESET))
    assert first.get_json()["used"] == 1


def test_every_authenticated_status_carries_the_headers(
    client: FlaskClient, runtime: Runtime, customer: Customer, frozen: object
) -> None:
    auth = customer.auth
    responses = {
        200: client.get("/api/v1/account", headers=auth),
        201: client.post("/api/v1/auth/keys", headers=auth, json={"name": "x"}),
        204: client.delete(f"/api/v1/auth/keys/{uuid.uuid4()}", headers=auth),
        400: client.post(
            "/api/v1/auth/keys", headers=auth, data="{", content_type="application/json"
        ),
        415: client.post("/api/v1/auth/keys", headers=auth, data="x", content_type="text/plain"),
        422: client.post("/api/v1/auth/keys", headers=auth, json={"name": ""}),
    }
    responses[204] = client.delete(
        f"/api/v1/auth/keys/{responses[201].get_json()['id']}", headers=auth
    )
    responses[404] = client.delete(f"/api/v1/auth/keys/{uuid.uuid4()}", headers=auth)
    for status, response in responses.items():
        assert response.status_code == status
        limit, remaining, reset = _headers(response)
        assert (limit, reset) == ("50000", str(RESET))
        assert 0 <= int(remaining) < 50000

    service.set_status(runtime, customer.account.id, "suspended")
    eventually(lambda: client.get("/api/v1/account", headers=auth).status_code == 403)
    suspended = client.get("/api/v1/account", headers=auth)
    before = int(_headers(suspended)[1])
    assert int(_headers(client.get("/api/v1/account", headers=auth))[1]) == before  # not counted

    anonymous = client.get("/api/v1/account")
    assert anonymous.status_code == 401
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert name not in anonymous.headers


def test_exhaustion_is_429_with_retry_after_until_the_month_ends(
    client: FlaskClient, runtime: Runtime, frozen: object
) -> None:
    customer = new_customer(runtime, plan="free")
    seed_ledger(runtime, customer.account.id, 998)
    assert _headers(client.get(QUOTA, headers=customer.auth))[1] == "1"
    assert _headers(client.get(QUOTA, headers=customer.auth))[1] == "0"
    for _ in range(3):
        refused = client.get(QUOTA, headers=customer.auth)
        assert refused.status_code == 429
        assert refused.mimetype == "application/problem+json"
        problem = refused.get_json()
        assert problem["type"] == "/problems/quota-exceeded"
        assert (problem["limit"], problem["used"], problem["reset"]) == (1000, 1000, RESET)
        # Until the month ends, plus a random spread so refused clients do not all come back in
        # its first second (issue 17).
        waits = RESET - int(NOW.timestamp())
        spread = int(refused.headers["Retry-After"]) - waits
        assert 0 <= spread <= MONTH_END_SPREAD_SECONDS
        assert problem["violated-policies"] == ["month"]
        assert _headers(refused) == ("1000", "0", str(RESET))
    period = period_containing(NOW)
    assert int(runtime.redis.get(counter_key(customer.account.id, period))) == 1000


def test_unlimited_plans_are_counted_but_never_refused(
    client: FlaskClient, runtime: Runtime, frozen: object
) -> None:
    customer = new_customer(runtime, plan="enterprise")
    seed_ledger(runtime, customer.account.id, 10**9)
    response = client.get(QUOTA, headers=customer.auth)
    assert response.status_code == 200
    assert response.get_json()["limit"] is None
    assert response.get_json()["remaining"] is None
    assert response.get_json()["used"] == 10**9 + 1
    assert _headers(response) == ("unlimited", "unlimited", str(RESET))


def test_the_counter_expires_after_its_month(
    client: FlaskClient, runtime: Runtime, customer: Customer, frozen: object
) -> None:
    client.get(QUOTA, headers=customer.auth)
    key = counter_key(customer.account.id, THIS_MONTH)
    ttl = runtime.redis.ttl(key)  # Redis's own clock, not the frozen one
    expected = THIS_MONTH.counter_expires_at - time_machine.escape_hatch.time.time()
    assert abs(ttl - expected) <= 5
    assert THIS_MONTH.counter_expires_at == RESET + 7 * 86400


def test_a_flushed_redis_does_not_hand_out_a_fresh_quota(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    for _ in range(5):
        client.get(QUOTA, headers=customer.auth)
    period = period_containing(datetime.now(UTC))

    def ledger() -> int:
        with runtime.database.connection() as conn:
            row = conn.execute(
                "SELECT used FROM quota_usage WHERE account_id = %s AND period = %s",
                (customer.account.id, period.first_day),
            ).fetchone()
        return row[0] if row else 0

    eventually(lambda: ledger() == 5, timeout=3.0)  # the writer thread, not a test hook
    runtime.redis.flushdb()
    assert client.get(QUOTA, headers=customer.auth).get_json()["used"] == 6


def test_a_restarted_redis_without_our_script_still_admits(
    client: FlaskClient, runtime: Runtime, customer: Customer
) -> None:
    client.get(QUOTA, headers=customer.auth)
    runtime.redis.script_flush()  # what a Redis restart does to the script cache
    response = client.get(QUOTA, headers=customer.auth)
    assert response.status_code == 200
    assert response.get_json()["used"] == 2


def test_months_roll_over_at_midnight_utc(client: FlaskClient, runtime: Runtime) -> None:
    customer = new_customer(runtime, plan="free")
    last_instant = THIS_MONTH.end - timedelta(milliseconds=100)
    seed_ledger(runtime, customer.account.id, 999, when=last_instant)
    with time_machine.travel(last_instant, tick=False):
        assert client.get(QUOTA, headers=customer.auth).get_json()["used"] == 1000
        refused = client.get(QUOTA, headers=customer.auth)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 1 + MONTH_END_SPREAD_SECONDS
    with time_machine.travel(THIS_MONTH.end + timedelta(milliseconds=100), tick=False):
        next_month = client.get(QUOTA, headers=customer.auth)
        assert next_month.status_code == 200
        body = next_month.get_json()
        assert (body["used"], body["period_start"]) == (1, _iso(NEXT_MONTH.start))
        assert body["reset"] == NEXT_MONTH.reset_epoch
    assert int(runtime.redis.get(counter_key(customer.account.id, THIS_MONTH))) == 1000
    assert int(runtime.redis.get(counter_key(customer.account.id, NEXT_MONTH))) == 1


def test_plan_changes_apply_on_the_next_request_without_resetting_usage(
    client: FlaskClient, runtime: Runtime, frozen: object
) -> None:
    customer = new_customer(runtime, plan="free")
    seed_ledger(runtime, customer.account.id, 1000)
    assert client.get(QUOTA, headers=customer.auth).status_code == 429

    service.set_plan(runtime, customer.account.id, "starter")
    eventually(lambda: client.get(QUOTA, headers=customer.auth).status_code == 200)
    upgraded = client.get(QUOTA, headers=customer.auth).get_json()
    assert upgraded["limit"] == 5000
    assert upgraded["used"] == 1002

    service.set_plan(runtime, customer.account.id, "free")  # below current usage
    eventually(lambda: client.get(QUOTA, headers=customer.auth).status_code == 429)
    refused = client.get(QUOTA, headers=customer.auth)
    assert _headers(refused)[:2] == ("1000", "0")
    # A call that raced the plan-change message may still have been admitted on the old plan.
    counter = int(runtime.redis.get(counter_key(customer.account.id, THIS_MONTH)))
    assert refused.get_json()["used"] == counter
    assert 1002 <= counter <= 1003


def test_redis_down_fails_closed_with_503(
    runtime: Runtime, settings: Settings, customer: Customer
) -> None:
    app: Flask = create_app(
        {"SETTINGS": settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})}
    )
    try:
        response = app.test_client().get("/api/v1/account", headers=customer.auth)
        assert response.status_code == 503
        assert response.get_json()["type"] == "/problems/service-unavailable"
        assert response.headers["Retry-After"] == "1"
    finally:
        close_app(app)


def test_the_ledger_receives_every_admission(
    app: Flask, runtime: Runtime, customer: Customer
) -> None:
    client = app.test_client()
    for _ in range(7):
        client.get(QUOTA, headers=customer.auth)
    app.extensions[QUOTA_EXTENSION].ledger.flush()
    period = period_containing(datetime.now(UTC))
    with psycopg.connect(runtime.settings.database_url or "") as conn:
        used = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s AND period = %s",
            (customer.account.id, period.first_day),
        ).fetchone()
    assert used == (7,)
