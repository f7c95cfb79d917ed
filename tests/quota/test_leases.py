"""Leases (a busy account's calls counted in Redis a batch at a time) keep the quota exact.

Each test drives real enforcers, as separate web processes would (their own runtime, ledger, sync
thread and leases), on real Redis and PostgreSQL, with a plan limit large enough that leases are
granted, and asserts exact numbers: calls admitted, the counter, the ledger.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from tests.support.accounts import Customer, new_customer
from tests.support.web import settings_environment
from timo_hub.accounts.principal import Principal
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota import leases
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.admission import counter_key
from timo_hub.quota.enforcer import QuotaEnforcer, quota_exceeded
from timo_hub.quota.leases import LEASE_SECONDS
from timo_hub.quota.ledger import durable_used
from timo_hub.quota.period import Period, period_containing


def _this_month() -> Period:
    return period_containing(datetime.now(UTC))


def _principal(customer: Customer, limit: int) -> Principal:
    return Principal(uuid.UUID(customer.key_id), customer.account.id, "active", "developer", limit)


def _counter(runtime: Runtime, customer: Customer) -> int:
    value = runtime.redis.get(counter_key(customer.account.id, _this_month()))
    assert value is not None
    return int(value)


def _ledger(runtime: Runtime, customer: Customer) -> int:
    with runtime.database.connection() as conn:
        return durable_used(conn, customer.account.id, _this_month().first_day)


def _leases_granted() -> float:
    return REGISTRY.get_sample_value("timo_quota_leases_granted_total") or 0.0


@contextmanager
def _web_processes(settings: Settings, count: int) -> Iterator[list[QuotaEnforcer]]:
    """`count` enforcers, each on connections of its own like a web process; closed afterwards
    (which writes their tallies and ends their leases, as a clean exit does)."""
    runtimes = [build_runtime(settings) for _ in range(count)]
    enforcers = [QuotaEnforcer(r) for r in runtimes]
    try:
        yield enforcers
    finally:
        for enforcer in enforcers:
            enforcer.close()
        for runtime in runtimes:
            runtime.close()


def test_leased_calls_never_overrun_the_limit_and_every_one_is_counted(
    settings: Settings, runtime: Runtime
) -> None:
    """Guards against a lease admitting past the limit, or leaving calls uncounted: three
    processes of four threads each call one account past its limit at once."""
    limit = 20_000
    customer = new_customer(runtime)
    principal = _principal(customer, limit)
    granted_before = _leases_granted()
    with _web_processes(settings, 3) as enforcers:
        admitted = [0] * 12
        highest = [0] * 12

        def call(slot: int, enforcer: QuotaEnforcer) -> None:
            for _ in range(22_000 // 12):
                admission = enforcer.admit(principal, time.time())
                if admission.admitted:
                    admitted[slot] += 1
                    highest[slot] = max(highest[slot], admission.used)

        threads = [
            threading.Thread(target=call, args=(slot, enforcers[slot % 3])) for slot in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sum(admitted) <= limit
        assert max(highest) <= limit
        # Leases parked in processes that stopped calling hold back a few calls until they end.
        time.sleep(LEASE_SECONDS + 0.5)
        while enforcers[0].admit(principal, time.time()).admitted:
            admitted[0] += 1
        assert not enforcers[1].admit(principal, time.time()).admitted
    assert sum(admitted) == limit
    assert _counter(runtime, customer) == limit
    assert _ledger(runtime, customer) == limit
    # Leases were granted (without them every call is a round trip and this test proves less).
    assert _leases_granted() - granted_before > 50


def test_a_rebuild_mid_lease_seeds_every_leased_call_and_voids_the_lease(
    settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against calls taken from a lease after the counter was rebuilt: the seed, taken
    once every process had certified its tally, missed them (counter 41 for 46 calls)."""
    # Leases outlive the rebuild however slow the machine: only the guards stop their use.
    monkeypatch.setattr(leases, "LEASE_SECONDS", 30.0)
    customer = new_customer(runtime)
    principal = _principal(customer, 1_000_000)
    with _web_processes(settings, 2) as (busy, other):
        made = 0
        for _ in range(40):
            assert busy.admit(principal, time.time()).admitted
            made += 1
        assert busy.leases.held() > 0  # calls counted ahead, waiting in this process
        runtime.redis.delete(counter_key(customer.account.id, _this_month()))  # Redis lost it
        # Rebuilt through the barrier: every process certifies its tally, then the seed.
        assert other.admit(principal, time.time()).admitted
        made += 1
        # Within the lease's lifetime still: these must be counted by the rebuilt counter.
        for _ in range(5):
            assert busy.admit(principal, time.time()).admitted
            made += 1
        # The month's first seed, and the rebuild.
        assert busy.rebuilder.rebuilt + other.rebuilder.rebuilt == 2
    assert _counter(runtime, customer) == made
    assert _ledger(runtime, customer) == made


KILLED_WEB_PROCESS = """
    import os, signal, sys, time, uuid
    from timo_hub.accounts.principal import Principal
    from timo_hub.platform.runtime import build_runtime
    from timo_hub.platform.settings import Settings
    from timo_hub.quota.enforcer import QuotaEnforcer
    enforcer = QuotaEnforcer(build_runtime(Settings.from_env()))
    key, account, limit = sys.argv[1:4]
    principal = Principal(uuid.UUID(key), uuid.UUID(account), "active", "developer", int(limit))
    def calls(n):
        return sum(enforcer.admit(principal, time.time()).admitted for _ in range(n))
    admitted = calls(1)
    time.sleep(0.6)  # the sync thread's first cycles: registered, and past any rebuild barrier
    admitted += calls(99)
    time.sleep(0.4)  # its leases recorded in Redis
    admitted += calls(60)  # used after that record: killed before the next one
    held = enforcer.leases.held()
    print(admitted, held, enforcer.ledger.writer_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_reconcile_returns_a_killed_process_lease_never_taking_the_counter_below_the_truth(
    settings: Settings, runtime: Runtime
) -> None:
    """Guards against a killed web process's lease holding the counter high for the rest of the
    month (its unused calls refused to the customer), against reconcile returning calls the
    process had used since it last recorded its lease (counter 100 for 160 calls: over-admission
    by the difference), and against it ending a live process's lease."""
    customer = new_customer(runtime)
    limit = 1_000_000
    principal = _principal(customer, limit)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED_WEB_PROCESS),
            customer.key_id,
            str(customer.account.id),
            str(limit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=settings_environment(settings),
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    words = child.stdout.split()
    admitted, held, writer = int(words[0]), int(words[1]), words[2]
    assert admitted == 160 and held > 0
    assert _counter(runtime, customer) == admitted + held
    with _web_processes(settings, 1) as (live,):
        for _ in range(40):
            assert live.admit(principal, time.time()).admitted
        assert live.leases.held() > 0
        # The killed process falls silent for longer than a live writer ever is.
        with runtime.database.connection() as conn:
            conn.execute(
                "UPDATE quota_writers SET seen_at = now() - interval '10 minutes'"
                " WHERE writer_id = %s",
                (writer,),
            )
        result = reconciliation.reconcile(runtime, _this_month())
        assert result.dead_leases_ended >= 1
    truth = admitted + 40
    # Never below what was admitted; at most what the dead lease had not used above it.
    assert truth <= _counter(runtime, customer) <= truth + held
    assert _ledger(runtime, customer) <= truth  # the killed process's last tally is lost


def test_a_refusal_while_calls_are_parked_in_leases_says_to_retry_in_a_second(
    settings: Settings, runtime: Runtime
) -> None:
    """Guards against a month-long Retry-After for a refusal that only leased, unused calls
    caused (after a downgrade below what leases had reserved): they come back within a second."""
    customer = new_customer(runtime)
    with _web_processes(settings, 2) as (leasing, other):
        for _ in range(40):
            assert leasing.admit(_principal(customer, 1_000_000), time.time()).admitted
        assert leasing.leases.held() > 0
        downgraded = _principal(customer, 40)  # exactly the calls made: the leases are over it
        refused = other.admit(downgraded, time.time())
        assert not refused.admitted and refused.calls_parked
        assert quota_exceeded(refused, time.time()).retry_after == 1
        leasing.leases.stop()  # its leases end: the parked calls go back
        assert _counter(runtime, customer) == 40
        final = other.admit(downgraded, time.time())
        assert not final.admitted and not final.calls_parked
        assert quota_exceeded(final, time.time()).retry_after > 60
