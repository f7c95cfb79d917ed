"""Burst windows beside the month (issue 17): one atomic step across both, the standard headers,
refusals that cost the month nothing, and no charge for our own failures."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import http_sfv
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import rate_limit_headers
from api.gate import QUOTA_EXTENSION
from api.metering import EXTENSION as EVENTS_EXTENSION
from tests.support.accounts import Customer, new_customer, principal_of
from tests.support.waiting import eventually
from timo_hub.accounts import service
from timo_hub.platform.runtime import Runtime
from timo_hub.quota import reconcile
from timo_hub.quota.admission import (
    BURST_POLICY,
    Admission,
    Admitter,
    BurstWindow,
    State,
    counter_keys,
    server_run_id,
)
from timo_hub.quota.enforcer import (
    MONTH_END_SPREAD_SECONDS,
    BurstLimitError,
    QuotaEnforcer,
    refusal,
)
from timo_hub.quota.period import Period, period_containing
from timo_hub.usage.statistics import account_usage_stats

QUOTA = "/api/v1/account/quota"
# A plan whose window is short enough to watch it reopen without a long sleep.
SHORT_PLAN = "burst-test-2s"


def _period() -> Period:
    return period_containing(datetime.now(UTC))


def _redis_now(runtime: Runtime) -> float:
    seconds, micros = runtime.redis.time()
    return seconds + micros / 1_000_000


def _fresh_window(runtime: Runtime, seconds: int, needed: float) -> None:
    """Wait, if need be, for a window of `seconds` (Redis's clock) with `needed` seconds left."""
    now = _redis_now(runtime)
    left = seconds - now % seconds
    if left < needed:
        time.sleep(left + 0.05)


def _fields(response: TestResponse) -> tuple[dict[str, dict], dict[str, dict]]:
    """`RateLimit-Policy` and `RateLimit` parsed as Structured Field Lists: {policy: params}."""
    policy, state = http_sfv.List(), http_sfv.List()
    policy.parse(response.headers["RateLimit-Policy"].encode())
    state.parse(response.headers["RateLimit"].encode())
    return (
        {item.value: dict(item.params) for item in policy},
        {item.value: dict(item.params) for item in state},
    )


def _ledger(runtime: Runtime, account_id: uuid.UUID) -> int:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s", (account_id,)
        ).fetchone()
    return 0 if row is None else int(row[0])


def _burst_in_redis(runtime: Runtime, account_id: uuid.UUID) -> int:
    found = runtime.redis.hget(counter_keys(account_id, _period()).burst, "n")
    return int(found or 0)


@pytest.fixture
def short_plan(runtime: Runtime) -> Iterator[str]:
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO plans (name, display_name, monthly_limit, sort_order, burst_limit, "
            "burst_window_seconds) SELECT %s, 'Burst test', 100000, max(sort_order) + 1, 3, 2 "
            "FROM plans ON CONFLICT (name) DO NOTHING",
            (SHORT_PLAN,),
        )
    yield SHORT_PLAN


def test_plans_are_seeded_with_their_burst_limits(runtime: Runtime) -> None:
    plans = {plan.name: plan for plan in service.list_plans(runtime)}
    seeded = {"free": 60, "starter": 300, "developer": 1000, "business": 5000, "enterprise": None}
    assert {name: plans[name].burst_limit for name in seeded} == seeded
    assert {plans[name].burst_window_seconds for name in ("free", "business", "enterprise")} == {60}


def test_a_free_plan_admits_sixty_a_minute_and_refusals_cost_the_month_nothing(
    client: FlaskClient, runtime: Runtime, app: Flask
) -> None:
    """Guards against a burst refusal charged to the month (or a month counted before the burst
    window was checked): the month's counter, ledger and headers must say 60 after 66 calls."""
    customer = new_customer(runtime, plan="free")
    _fresh_window(runtime, 60, needed=10)
    month_seconds = int((_period().end - _period().start).total_seconds())
    for i in range(1, 61):
        response = client.get(QUOTA, headers=customer.auth)
        assert response.status_code == 200
        body = response.get_json()
        policies, states = _fields(response)
        assert policies == {"month": {"q": 1000, "w": month_seconds}, "burst": {"q": 60, "w": 60}}
        # Both header families and the body say the same thing.
        assert body["used"] == i and body["burst"]["used"] == i
        assert states["month"]["r"] == body["remaining"] == 1000 - i
        assert int(response.headers["X-RateLimit-Remaining"]) == body["remaining"]
        assert states["burst"]["r"] == body["burst"]["remaining"] == 60 - i
        assert body["burst"] | {"used": 0, "remaining": 0, "reset": 0} == {
            "limit": 60,
            "window_seconds": 60,
            "used": 0,
            "remaining": 0,
            "reset": 0,
        }
        # `t` is the seconds from the call to the window's end (`reset`), the month's likewise.
        now = time.time()
        assert 1 <= states["burst"]["t"] <= 60
        assert abs(body["burst"]["reset"] - states["burst"]["t"] - now) < 2
        assert body["burst"]["reset"] % 60 == 0
        assert abs(body["reset"] - states["month"]["t"] - now) < 2
    for _ in range(6):
        refused = client.get(QUOTA, headers=customer.auth)
        assert refused.status_code == 429
        problem = refused.get_json()
        assert problem["type"] == "/problems/burst-limit-exceeded"
        assert problem["violated-policies"] == ["burst"] and problem["policy"] == "burst"
        assert (problem["limit"], problem["used"], problem["window_seconds"]) == (60, 60, 60)
        _, states = _fields(refused)
        retry_after = int(refused.headers["Retry-After"])
        if problem["reset"] < _period().reset_epoch:
            assert retry_after == states["burst"]["t"]
        else:  # the month's last window: its refusals are spread as the month's are
            assert 0 <= retry_after - states["burst"]["t"] <= MONTH_END_SPREAD_SECONDS
        assert 1 <= states["burst"]["t"] <= 60
        assert abs(problem["reset"] - states["burst"]["t"] - time.time()) < 2
        assert states["burst"]["r"] == 0
        # The month was not charged for it.
        assert refused.headers["X-RateLimit-Remaining"] == "940"
        assert states["month"]["r"] == 940
    period = _period()
    assert int(runtime.redis.get(counter_keys(customer.account.id, period).counter)) == 60
    app.extensions[QUOTA_EXTENSION].ledger.flush()
    assert _ledger(runtime, customer.account.id) == 60
    assert _burst_in_redis(runtime, customer.account.id) == 60


def test_the_window_reopens_when_its_time_is_up(
    client: FlaskClient, runtime: Runtime, short_plan: str
) -> None:
    """Guards against a window that reopens early (over-admitting) or late (a Retry-After that
    lies): 3 calls per 2-second window, on Redis's clock."""
    customer = new_customer(runtime, plan=short_plan)
    _fresh_window(runtime, 2, needed=1.0)
    for _ in range(3):
        assert client.get(QUOTA, headers=customer.auth).status_code == 200
    refused = client.get(QUOTA, headers=customer.auth)
    assert refused.status_code == 429
    problem = refused.get_json()
    reopens = problem["reset"]
    assert reopens % 2 == 0
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after == math.ceil(reopens - _redis_now(runtime)) or retry_after in (1, 2)
    # The window's hash goes soon after its window: nothing lingers for a month.
    ttl_ms = runtime.redis.pttl(counter_keys(customer.account.id, _period()).burst)
    assert 0 < ttl_ms <= (reopens - _redis_now(runtime)) * 1000 + 1100

    # Just before the window ends it still refuses ...
    while _redis_now(runtime) < reopens - 0.25:
        time.sleep(0.05)
    assert client.get(QUOTA, headers=customer.auth).status_code == 429
    # ... and once it has ended, it admits: a new window, and the month counted only admissions.
    while _redis_now(runtime) < reopens + 0.02:
        time.sleep(0.01)
    reopened = client.get(QUOTA, headers=customer.auth)
    assert reopened.status_code == 200
    body = reopened.get_json()
    assert body["burst"] == {
        "limit": 3,
        "window_seconds": 2,
        "used": 1,
        "remaining": 2,
        "reset": reopens + 2,
    }
    assert body["used"] == 4


def test_a_call_refused_by_the_month_says_so_and_when_both_are_spent_names_both(
    client: FlaskClient, runtime: Runtime, short_plan: str, app: Flask
) -> None:
    customer = new_customer(runtime, plan=short_plan)
    service.set_limits(runtime, customer.account.id, {"month": 3})
    _fresh_window(runtime, 2, needed=1.0)
    for _ in range(3):
        assert client.get(QUOTA, headers=customer.auth).status_code == 200
    refused = client.get(QUOTA, headers=customer.auth)
    problem = refused.get_json()
    assert problem["type"] == "/problems/quota-exceeded"
    assert problem["violated-policies"] == ["month", "burst"]
    assert int(refused.headers["Retry-After"]) >= _period().seconds_until_reset(time.time())


def test_operators_set_an_accounts_own_limits(
    client: FlaskClient, runtime: Runtime, run: object
) -> None:
    customer = new_customer(runtime, plan="enterprise")
    first = client.get(QUOTA, headers=customer.auth)
    assert "RateLimit-Policy" not in first.headers  # nothing limited, nothing to describe
    assert first.get_json()["burst"] is None

    result = run(  # type: ignore[operator]
        "accounts",
        "set-limit",
        str(customer.account.id),
        "--per-minute",
        "5",
        "--monthly",
        "2,000,000",
    )
    assert result.exit_code == 0, result.output
    assert "2,000,000 calls/month, 5 calls/minute" in result.output

    def limited() -> bool:
        return "RateLimit-Policy" in client.get(QUOTA, headers=customer.auth).headers

    eventually(limited, timeout=5)  # every web process forgets the cached limits within a second
    response = client.get(QUOTA, headers=customer.auth)
    policies, _ = _fields(response)
    assert policies["burst"] == {"q": 5, "w": 60}
    assert policies["month"]["q"] == 2_000_000
    assert client.get("/api/v1/account", headers=customer.auth).get_json()["plan"] | {
        "price_usd": None
    } == {
        "name": "enterprise",
        "monthly_limit": 2_000_000,
        "price_usd": None,
        "burst_limit": 5,
        "burst_window_seconds": 60,
    }

    result = run("accounts", "set-limit", str(customer.account.id), "--per-minute", "plan")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert "no burst limit (set for this account: month)" in result.output
    bad = run("accounts", "set-limit", str(customer.account.id), "--per-minute", "-3")  # type: ignore[operator]
    assert bad.exit_code != 0 and "--per-minute" in bad.output


def test_a_server_error_is_refunded_from_every_window_and_everything_agrees(
    app: Flask,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    celery_worker: object,
) -> None:
    """Guards against charging customers for our failures: a call the handler answered 500 (any
    5xx, not only 503) stayed counted in the month, in the burst window and in the ledger."""
    customer = new_customer(runtime, plan="free")
    account_id = customer.account.id
    client = app.test_client()
    enforcer: QuotaEnforcer = app.extensions[QUOTA_EXTENSION]
    _fresh_window(runtime, 60, needed=15)
    assert client.get(QUOTA, headers=customer.auth).get_json()["burst"]["used"] == 1

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(service, "list_keys", broken)
    failed = client.get("/api/v1/auth/keys", headers=customer.auth)
    assert failed.status_code == 500
    assert failed.headers["X-RateLimit-Remaining"] == "998"  # what admission said at the time
    monkeypatch.undo()

    enforcer.ledger.flush()
    eventually(lambda: _burst_in_redis(runtime, account_id) == 1, timeout=5)
    keys = counter_keys(account_id, _period())
    assert int(runtime.redis.get(keys.counter)) == 1
    assert _ledger(runtime, account_id) == 1
    after = client.get(QUOTA, headers=customer.auth).get_json()
    assert (after["used"], after["burst"]["used"]) == (2, 2)

    # The event still records the 500; usage_daily counts it as a server error, not a charge.
    assert app.extensions[EVENTS_EXTENSION].drain(timeout=10)

    def statuses() -> dict[int, int]:
        with runtime.database.connection() as conn:
            rows = conn.execute(
                "SELECT status, sum(calls) FROM usage_daily WHERE account_id = %s GROUP BY status",
                (account_id,),
            ).fetchall()
        return {int(status): int(calls) for status, calls in rows}

    eventually(lambda: statuses() == {200: 2, 500: 1}, timeout=15)
    enforcer.ledger.flush()
    stats = account_usage_stats(runtime.database, account_id, "7d", datetime.now(UTC).date())
    assert (stats.server_errors, stats.successful, stats.charged) == (1, 2, 2)
    checks = [c for c in reconcile.check(runtime, _period()) if c.account_id == account_id]
    assert [(c.redis, c.ledger, c.log, c.state.value) for c in checks] == [(2, 2, 2, "in_step")]


def test_a_lost_counter_is_rebuilt_with_its_burst_window(
    client: FlaskClient, runtime: Runtime, app: Flask
) -> None:
    """Guards against a Redis restart (or a stale snapshot, or a promoted replica) handing a
    client a fresh burst window: the counter of another server life is rebuilt from the ledger,
    and its current window from the ledger's window tallies, so a spent window stays spent."""
    customer = new_customer(runtime, plan="free")
    account_id = customer.account.id
    _fresh_window(runtime, 60, needed=15)
    for _ in range(60):
        assert client.get(QUOTA, headers=customer.auth).status_code == 200
    keys = counter_keys(account_id, _period())
    # What a restore from an older snapshot looks like: another server life's stamp, a window
    # that had seen nothing.
    runtime.redis.set(keys.run, "a-server-life-long-gone", keepttl=True)
    runtime.redis.hset(keys.burst, "n", 0)

    refused = client.get(QUOTA, headers=customer.auth)  # rebuilds, then refuses
    assert refused.status_code == 429, refused.get_json()
    assert refused.get_json()["type"] == "/problems/burst-limit-exceeded"
    assert refused.headers["X-RateLimit-Remaining"] == "940"
    assert runtime.redis.get(keys.run).decode() == server_run_id(runtime.redis)
    assert _burst_in_redis(runtime, account_id) == 60

    # Missing altogether (a restart without persistence): the same.
    runtime.redis.delete(keys.counter, keys.run, keys.burst)
    refused = client.get(QUOTA, headers=customer.auth)
    assert refused.status_code == 429
    assert refused.get_json()["type"] == "/problems/burst-limit-exceeded"
    assert _burst_in_redis(runtime, account_id) == 60


def test_leases_never_let_a_window_admit_more_than_its_limit(app: Flask, runtime: Runtime) -> None:
    """Guards against leases (calls counted ahead in one process) spilling past a burst window:
    a busy account with a window big enough to lease from is hammered from several threads; the
    window admits at most its limit, and once the leases are ended the window, the month and
    the ledger all hold exactly the calls admitted."""
    customer = new_customer(runtime, plan="business")
    service.set_limits(runtime, customer.account.id, {"burst": 2500})
    enforcer: QuotaEnforcer = app.extensions[QUOTA_EXTENSION]
    principal = principal_of(runtime, customer)
    assert principal.burst_limit == 2500
    _fresh_window(runtime, 60, needed=30)

    def burst_of_calls(_: int) -> tuple[int, int]:
        admitted = refused = 0
        for _ in range(1000):
            outcome = enforcer.admit(principal, time.time())
            if outcome.admitted:
                admitted += 1
            else:
                refused += 1
        return admitted, refused

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(burst_of_calls, range(4)))
    admitted = sum(a for a, _ in results)
    assert admitted <= 2500
    assert sum(r for _, r in results) == 4000 - admitted
    assert enforcer.leases.held() >= 0
    enforcer.leases.end_due(time.monotonic(), every=True)
    enforcer.ledger.flush()
    keys = counter_keys(customer.account.id, _period())
    assert int(runtime.redis.get(keys.counter)) == admitted
    assert _burst_in_redis(runtime, customer.account.id) == admitted
    assert _ledger(runtime, customer.account.id) == admitted
    with runtime.database.connection() as conn:
        window = conn.execute(
            "SELECT sum(used) FROM quota_window_usage WHERE account_id = %s",
            (customer.account.id,),
        ).fetchone()
    assert window == (admitted,)
    # Close to the limit, calls were counted one by one: the window filled up exactly.
    assert admitted == 2500


def test_window_tallies_of_an_hour_ago_are_pruned(runtime: Runtime, customer: Customer) -> None:
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO quota_window_usage (account_id, window_start, used) VALUES "
            "(%s, now() - interval '2 hours', 5), (%s, date_trunc('minute', now()), 7)",
            (customer.account.id, customer.account.id),
        )
    reconcile.reconcile(runtime, _period())
    with runtime.database.connection() as conn:
        left = conn.execute(
            "SELECT used FROM quota_window_usage WHERE account_id = %s", (customer.account.id,)
        ).fetchall()
    assert left == [(7,)]


def test_limits_are_checked_by_the_database_too(runtime: Runtime, customer: Customer) -> None:
    with runtime.database.connection() as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE plans SET burst_window_seconds = 7 WHERE name = 'free'")


def test_a_burst_refusal_while_calls_are_leased_says_retry_in_a_second(runtime: Runtime) -> None:
    """Guards against a refusal that sends a client away for the rest of the window while calls
    leased in it (and perhaps never used) come back within a second: Retry-After and the
    window's `t` say 1 then, as the month's refusal already did."""
    admitter = Admitter(runtime.redis, fence_token="test")
    account_id = uuid.uuid4()
    period = _period()
    _fresh_window(runtime, 60, needed=10)
    assert admitter.admit(account_id, None, period, burst_limit=2000).state is State.REBUILD
    assert admitter.seed(account_id, period, 0, 60, {})
    leased = admitter.admit(account_id, None, period, wanted=2, lease="w:1", burst_limit=2000)
    assert (leased.state, leased.granted) == (State.ADMITTED, 2)
    for _ in range(1998):
        assert admitter.admit(account_id, None, period, burst_limit=2000).state is State.ADMITTED
    outcome = admitter.admit(account_id, None, period, burst_limit=2000)
    assert (outcome.state, outcome.granted, outcome.burst_used) == (State.THROTTLED, 1, 2000)

    burst = BurstWindow(2000, outcome.burst_used, 60, outcome.at // 60_000_000, 5.0)
    admission = Admission(
        False, 2000, None, period, calls_parked=True, burst=burst, refused_by=BURST_POLICY
    )
    error = refusal(admission, time.time())
    assert isinstance(error, BurstLimitError) and error.retry_after == 1
    assert rate_limit_headers.state_field(admission, time.time()) == '"burst";r=0;t=1'


def test_refusals_in_the_months_last_window_are_spread_like_the_months() -> None:
    """Guards against a stampede at 00:00 UTC from burst refusals: the month's last window ends
    with the month, so its refusals get the month's spread (and never less than the window)."""
    period = _period()
    seconds = 60
    last = period.reset_epoch // seconds - 1
    burst = BurstWindow(60, 60, seconds, last, 12.3)
    admission = Admission(False, 10, 1000, period, burst=burst, refused_by=BURST_POLICY)
    waits = {refusal(admission, time.time()).retry_after for _ in range(200)}
    assert min(waits) >= 13 and max(waits) <= 13 + MONTH_END_SPREAD_SECONDS
    assert len(waits) > 10  # spread, not one moment
    earlier = Admission(
        False, 10, 1000, period, burst=burst._replace(number=last - 5), refused_by=BURST_POLICY
    )
    assert {refusal(earlier, time.time()).retry_after for _ in range(50)} == {13}


def test_limits_are_bounded_by_what_the_headers_can_carry(
    runtime: Runtime, customer: Customer, run: object
) -> None:
    """Guards against a limit the RateLimit headers cannot express (Structured Field Integers
    have at most 15 digits: 10**15 made the header unparseable) and against a burst window of 0
    that promises to reopen and never admits anything."""
    account_id = customer.account.id
    service.set_limits(runtime, account_id, {"month": service.MAX_LIMIT, "burst": 1})
    with pytest.raises(service.InvalidError):
        service.set_limits(runtime, account_id, {"month": service.MAX_LIMIT + 1})
    with pytest.raises(service.InvalidError):
        service.set_limits(runtime, account_id, {"burst": 0})
    policy = http_sfv.List()
    policy.parse(f'"month";q={service.MAX_LIMIT};w=60'.encode())
    with runtime.database.connection() as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "UPDATE account_limit_overrides SET calls = 0 WHERE account_id = %s "
            "AND policy = 'burst'",
            (account_id,),
        )
    odd = run("accounts", "set-limit", str(account_id), "--per-minute", "²")  # type: ignore[operator]
    assert odd.exit_code == 2 and "--per-minute" in odd.output
