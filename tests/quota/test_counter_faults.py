"""The quota stays exact when Redis loses, forgets, stalls or is reconciled under traffic.

Each test drives real gunicorn servers (two, of two workers each, so four web processes holding
tallies) on a Redis server of its own, injects the fault mid-burst, and asserts exact numbers:
calls admitted, the counter, the ledger, and where it matters the event log.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.support.accounts import Customer, new_customer, principal_of
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota import reconcile as reconciliation
from timo_hub.quota.admission import counter_key
from timo_hub.quota.counting import counted_calls
from timo_hub.quota.enforcer import QuotaEnforcer
from timo_hub.quota.period import Period, period_containing

pytestmark = pytest.mark.slow

QUOTA = "/api/v1/account/quota"
FREE_LIMIT = 1000


@dataclass(frozen=True)
class Answer:
    """The final answer one call got (after retrying 503s, when the burst does)."""

    status: int
    remaining: int | None
    tries: int


class Burst:
    """Concurrent calls spread over several servers; `fault` runs once `at` calls are answered."""

    def __init__(self, bases: list[str], customer: Customer) -> None:
        self._bases = bases
        self._customer = customer
        self._answered = 0
        self._progress = threading.Condition()
        self._local = threading.local()

    def wait_for(self, answered: int) -> None:
        """Block the fault until `answered` calls have their final answer."""
        with self._progress:
            self._progress.wait_for(lambda: self._answered >= answered, timeout=120)

    def run(
        self,
        calls: int,
        *,
        fault: Callable[[Burst], None],
        at: int,
        retry_503: bool = True,
        concurrency: int = 16,
    ) -> list[Answer]:
        """Make `calls` calls with `concurrency` clients; inject `fault` after `at` answers."""
        failures: list[BaseException] = []

        def inject() -> None:
            self.wait_for(at)
            try:
                fault(self)
            except BaseException as exc:  # reported after the burst
                failures.append(exc)

        injector = threading.Thread(target=inject)
        injector.start()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            answers = list(pool.map(lambda i: self._call(i, retry_503), range(calls)))
        injector.join(timeout=120)
        assert not failures, failures
        return answers

    def _call(self, i: int, retry_503: bool) -> Answer:
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        base = self._bases[i % len(self._bases)]
        give_up_at = time.monotonic() + 90
        tries = 0
        while True:
            tries += 1
            try:
                response = session.get(base + QUOTA, headers=self._customer.auth, timeout=30)
                status = response.status_code
            except requests.ConnectionError:
                status = 599  # a worker restarting; a client would retry
            if (status in (503, 599) and retry_503) and time.monotonic() < give_up_at:
                time.sleep(0.05)
                continue
            break
        with self._progress:
            self._answered += 1
            self._progress.notify_all()
        remaining = response.headers.get("X-RateLimit-Remaining") if status < 599 else None
        return Answer(status, None if remaining is None else int(remaining), tries)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own (the session's broker stays untouched)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def stack_settings(settings: Settings, own_redis: RedisServer) -> Settings:
    """Settings for web processes on the test's own Redis and the session's broker."""
    return settings.with_services(database_url=settings.database_url, redis_url=own_redis.url)


@pytest.fixture
def stack_runtime(stack_settings: Settings, runtime: Runtime) -> Iterator[Runtime]:
    """Connections to the database and the test's own Redis (after `runtime` emptied them)."""
    own = build_runtime(stack_settings)
    yield own
    own.close()


def _this_month() -> Period:
    return period_containing(datetime.now(UTC))


def _ledger(runtime: Runtime, customer: Customer) -> int:
    with runtime.database.connection() as conn:
        row = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s AND period = %s",
            (customer.account.id, _this_month().first_day),
        ).fetchone()
    return int(row[0]) if row else 0


def _counter(runtime: Runtime, customer: Customer) -> int | None:
    value = runtime.redis.get(counter_key(customer.account.id, _this_month()))
    return None if value is None else int(value)


def _rebuild_requests(runtime: Runtime) -> int:
    with runtime.database.connection() as conn:
        row = conn.execute("SELECT last_value, is_called FROM quota_sync_seq").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def _delete_counter(runtime: Runtime, customer: Customer) -> Callable[[Burst], None]:
    return lambda _: runtime.redis.delete(counter_key(customer.account.id, _this_month()))


def _flush_all(runtime: Runtime, customer: Customer) -> Callable[[Burst], None]:
    return lambda _: runtime.redis.flushall()


def _restart_from_stale_snapshot(server: RedisServer) -> Callable[[Burst], None]:
    def fault(burst: Burst) -> None:
        snapshot = server.save("stale.rdb")  # the counter as it is after about 300 calls
        burst.wait_for(600)
        server.crash_and_restart_from(snapshot)  # ... comes back 300 calls short

    return fault


FAULTS = {
    "counter-deleted": lambda runtime, customer, server: _delete_counter(runtime, customer),
    "flushall": lambda runtime, customer, server: _flush_all(runtime, customer),
    "restart-from-stale-snapshot": lambda runtime, customer, server: _restart_from_stale_snapshot(
        server
    ),
}


@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_a_counter_lost_or_stale_mid_burst_admits_exactly_the_limit(
    stack_settings: Settings,
    stack_runtime: Runtime,
    own_redis: RedisServer,
    fault_name: str,
) -> None:
    """Guards against over-admission after Redis loses or rolls back a counter mid-burst: the
    rebuild used to seed from the ledger plus only its own process's unwritten tally (1,015 to
    1,017 calls admitted of 1,000), two processes rebuilding at once kept the lower seed, and a
    counter restored from a stale snapshot was trusted as it was."""
    customer = new_customer(stack_runtime, plan="free", burst="unlimited")
    fault = FAULTS[fault_name](stack_runtime, customer, own_redis)
    requests_before = _rebuild_requests(stack_runtime)
    with ExitStack() as stack:
        bases = [stack.enter_context(web_process(stack_settings, workers=2)) for _ in range(2)]
        answers = Burst(bases, customer).run(1100, fault=fault, at=300)
        assert _counter(stack_runtime, customer) == FREE_LIMIT
    # Every web process has exited cleanly, writing its tally.

    statuses = Counter(a.status for a in answers)
    assert statuses == {200: FREE_LIMIT, 429: 100}
    remaining = sorted((a.remaining for a in answers if a.status == 200), reverse=True)
    if fault_name == "restart-from-stale-snapshot":
        # A call Redis counted as it crashed, cut off before its answer (a 503, retried), used up
        # a number that the rebuilt counter, seeded with the calls answered, hands out again: the
        # counts stay exact, and a header value repeats once per such call.
        assert set(remaining) <= set(range(FREE_LIMIT))
        assert len(remaining) - len(set(remaining)) <= sum(a.tries - 1 for a in answers)
    else:
        assert remaining == list(range(FREE_LIMIT - 1, -1, -1))  # each value handed out once
    assert _ledger(stack_runtime, customer) == FREE_LIMIT
    # The fault was felt: the counter was rebuilt through the barrier (not seeded as a new month).
    assert _rebuild_requests(stack_runtime) > requests_before


def test_two_processes_finding_the_counter_missing_at_once_seed_it_once_with_both_tallies(
    stack_settings: Settings, stack_runtime: Runtime
) -> None:
    """Guards against each process seeding with only its own unwritten tally (and the lower
    seed winning): two web processes, each holding tallies, find the counter gone together."""
    customer = new_customer(stack_runtime, burst="unlimited")
    first, second = build_runtime(stack_settings), build_runtime(stack_settings)
    enforcers = [QuotaEnforcer(first), QuotaEnforcer(second)]
    principal = principal_of(stack_runtime, customer)
    try:
        now = time.time()
        for enforcer, calls in zip(enforcers, (3, 4), strict=True):
            for _ in range(calls):
                assert enforcer.admit(principal, now).admitted
        seeded_before = sum(e.rebuilder.rebuilt for e in enforcers)  # the month's first seed
        # At once, before the sync threads (every 0.25 s) have written what they hold.
        stack_runtime.redis.delete(counter_key(customer.account.id, _this_month()))
        assert enforcers[0].ledger.holds_anything() or enforcers[1].ledger.holds_anything()
        start = threading.Barrier(2)
        used: list[int] = []

        def admit(enforcer: QuotaEnforcer) -> None:
            start.wait()
            admission = enforcer.admit(principal, time.time())
            assert admission.admitted
            used.append(admission.used)

        threads = [threading.Thread(target=admit, args=(e,)) for e in enforcers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(used) == [8, 9]
        assert sum(e.rebuilder.rebuilt for e in enforcers) == seeded_before + 1
    finally:
        for enforcer in enforcers:
            enforcer.close()  # which returns the calls of leases not used
        first.close()
        second.close()
    assert _counter(stack_runtime, customer) == 9
    assert _ledger(stack_runtime, customer) == 9


def test_reconcile_three_times_under_traffic_changes_no_count(
    stack_settings: Settings, stack_runtime: Runtime
) -> None:
    """Guards against reconcile raising the additive ledger to Redis while web processes still
    held tallies they then added on top (ledger 12,937 for 12,875 calls, then `used` one more)."""
    customer = new_customer(stack_runtime, burst="unlimited")
    period = _this_month()
    repairs: list[int] = []

    def reconcile_thrice(burst: Burst) -> None:
        for answered in (300, 600, 900):
            burst.wait_for(answered)
            repairs.append(len(reconciliation.reconcile(stack_runtime, period).repairs))

    with ExitStack() as stack:
        bases = [stack.enter_context(web_process(stack_settings, workers=2)) for _ in range(2)]
        answers = Burst(bases, customer).run(1500, fault=reconcile_thrice, at=0)
    assert Counter(a.status for a in answers) == {200: 1500}
    assert repairs == [0, 0, 0]
    assert _counter(stack_runtime, customer) == 1500
    assert _ledger(stack_runtime, customer) == 1500
    with web_process(stack_settings) as base:
        after = requests.get(base + QUOTA, headers=customer.auth, timeout=10).json()
    assert after["used"] == 1501


def test_a_stalled_redis_counts_no_call_it_answered_503(
    stack_settings: Settings,
    stack_runtime: Runtime,
    own_redis: RedisServer,
    celery_worker: object,
) -> None:
    """Guards against phantom usage: with Redis stopped (SIGSTOP) the calls in flight time out
    and are answered 503, and the queued admissions used to count when Redis woke up."""
    customer = new_customer(stack_runtime, burst="unlimited")

    def stall(_: Burst) -> None:
        own_redis.pause()
        time.sleep(3.0)  # beyond the 2 s socket timeout: every call in flight gives up
        own_redis.resume()

    with ExitStack() as stack:
        bases = [stack.enter_context(web_process(stack_settings, workers=2)) for _ in range(2)]
        answers = Burst(bases, customer).run(800, fault=stall, at=200, retry_503=False)
        statuses = Counter(a.status for a in answers)
        admitted = statuses[200]
        assert statuses[503] > 0
        assert set(statuses) <= {200, 503}
        # An answer that comes after its caller gave up is read and, if counted, taken back.
        eventually(lambda: _counter(stack_runtime, customer) == admitted, timeout=10)
    assert _ledger(stack_runtime, customer) == admitted

    # And the event log agrees: every call has its event, and only the 200s count.
    def logged() -> int:
        with stack_runtime.database.connection() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM usage_daily WHERE account_id = %s",
                (customer.account.id,),
            ).fetchone()
        return int(row[0]) if row else 0

    eventually(lambda: logged() == 800, timeout=60)
    period = _this_month()
    with stack_runtime.database.connection() as conn:
        counted = counted_calls(conn, period.first_day, period.end.date(), customer.account.id)
    assert counted == {customer.account.id: admitted}
