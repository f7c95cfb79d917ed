"""Rebuilding a lost counter: no process, reachable or not, can hold an account's calls up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import redis

from tests.support.accounts import new_customer, principal_of
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota.admission import counter_keys
from timo_hub.quota.enforcer import QuotaEnforcer
from timo_hub.quota.period import period_containing
from timo_hub.quota.rebuild import CounterRebuilder

PERIOD = period_containing(datetime.now(UTC))


@pytest.fixture
def enforcer(runtime: Runtime) -> Iterator[QuotaEnforcer]:
    """A web process's quota enforcement, on the test servers."""
    enforcer = QuotaEnforcer(runtime)
    yield enforcer
    enforcer.close()


def test_a_process_cut_off_from_redis_does_not_hold_up_a_rebuild(
    runtime: Runtime, settings: Settings, enforcer: QuotaEnforcer
) -> None:
    """Guards against one web process that cannot reach Redis (but still beats into
    PostgreSQL) stalling every rebuild: writers learned of rebuild requests from Redis, so it
    never answered, and each account whose counter was lost got 503s for as long as it lasted."""
    cut_off_runtime = build_runtime(
        settings.with_services(
            database_url=settings.database_url or "", redis_url="redis://127.0.0.1:1/0"
        )
    )
    cut_off = QuotaEnforcer(cut_off_runtime)
    customer = new_customer(runtime)
    principal = principal_of(runtime, customer)
    try:
        with pytest.raises(redis.ConnectionError):
            cut_off.admit(principal, time.time())  # registers as a writer, then cannot count
        assert enforcer.admit(principal, time.time()).used == 1
        runtime.redis.delete(counter_keys(customer.account.id, PERIOD).counter)

        admission = enforcer.admit(principal, time.time())  # waits for both writers
        assert (admission.admitted, admission.used) == (True, 2)
    finally:
        cut_off.close()
        cut_off_runtime.close()


def test_a_rebuild_that_fails_to_start_lets_go_of_its_fence(
    runtime: Runtime, enforcer: QuotaEnforcer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against an account answering 503 for 15 s after one failed rebuild: the fence
    taken by a rebuild whose start failed (PostgreSQL briefly unreachable) was kept until it
    expired, and everyone else waited for a rebuild nobody was doing."""
    customer = new_customer(runtime)
    principal = principal_of(runtime, customer)
    keys = counter_keys(customer.account.id, PERIOD)
    assert enforcer.admit(principal, time.time()).used == 1
    runtime.redis.delete(keys.counter)

    real_start = CounterRebuilder.start

    def failing_once(self: CounterRebuilder, *args: object) -> bool:
        monkeypatch.setattr(CounterRebuilder, "start", real_start)
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(CounterRebuilder, "start", failing_once)
    with pytest.raises(psycopg.OperationalError):
        enforcer.admit(principal, time.time())
    assert runtime.redis.get(keys.fence) is None

    started = time.monotonic()
    admission = enforcer.admit(principal, time.time())
    assert (admission.admitted, admission.used) == (True, 2)
    assert time.monotonic() - started < 2.0  # rebuilt at once, not after the fence expired
