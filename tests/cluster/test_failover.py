"""A master of the Redis Cluster killed (`kill -9`) under traffic: its replica takes over, and no
call is admitted beyond the limit, before, during or after."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from tests.support.accounts import new_customer
from tests.support.cluster_settings import on_cluster
from tests.support.redis_cluster import RedisClusterServers
from tests.support.web import web_process
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota.admission import counter_keys
from timo_hub.quota.period import period_containing
from timo_hub.quota.reconcile import CounterState, check

pytestmark = pytest.mark.slow

LIMIT = 1000
CALLERS = 12


@pytest.fixture
def cluster_runtime(cluster_settings: Settings) -> Iterator[Runtime]:
    """A runtime on this test's own cluster."""
    runtime = build_runtime(cluster_settings)
    yield runtime
    runtime.close()


@pytest.fixture
def cluster_settings(
    settings: Settings, runtime: Runtime, fresh_redis_cluster: RedisClusterServers
) -> Settings:
    """The suite's settings on a cluster of this test's own (it kills a node)."""
    return on_cluster(settings, fresh_redis_cluster)


def test_a_master_killed_mid_traffic_fails_over_without_over_admitting(
    cluster_settings: Settings, cluster_runtime: Runtime, fresh_redis_cluster: RedisClusterServers
) -> None:
    """Guards over-admission across a failover. Replication is asynchronous, so the replica
    that takes over may lack the last calls its master counted; trusted as it is, it would admit
    them again. The counter carries the server life (`run_id`) that seeded it, so the promoted
    replica's copy counts as missing and is rebuilt from the ledger first. Calls that reach the
    slot while it has no master answer 503 (the client retries); the month admits exactly its
    1,000 calls whatever the timing."""
    customer = new_customer(cluster_runtime, plan="free", burst="unlimited")
    period = period_containing(datetime.now(UTC))
    counter = counter_keys(customer.account.id, period).counter
    killed_master = fresh_redis_cluster.master_of(counter)
    statuses: Counter[int] = Counter()
    health: Counter[int] = Counter()
    lock = threading.Lock()
    failed_over = threading.Event()
    give_up = threading.Event()

    with (
        web_process(cluster_settings, workers=2) as first,
        web_process(cluster_settings, workers=2) as second,
    ):
        bases = [first, second]

        def caller(n: int) -> None:
            session = requests.Session()
            i = n
            while not give_up.is_set():
                response = session.get(
                    f"{bases[i % 2]}/api/v1/account/quota", headers=customer.auth, timeout=30
                )
                i += 1
                with lock:
                    statuses[response.status_code] += 1
                if response.status_code == 429 and failed_over.is_set():
                    return
                if response.status_code == 503:
                    assert response.headers["Content-Type"] == "application/problem+json"
                    time.sleep(0.05)

        def watch_health() -> None:
            while not failed_over.is_set() and not give_up.is_set():
                status = requests.get(f"{first}/api/v1/health", timeout=10).status_code
                with lock:
                    health[status] += 1
                time.sleep(0.05)

        callers = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
        for thread in callers:
            thread.start()
        try:
            deadline = time.monotonic() + 60
            while statuses[200] < 300:
                assert time.monotonic() < deadline, f"traffic did not flow: {statuses}"
                time.sleep(0.01)
            watcher = threading.Thread(target=watch_health)
            watcher.start()
            killed_at = time.monotonic()
            fresh_redis_cluster.kill_master_of(counter)
            new_master = fresh_redis_cluster.wait_for_failover(killed_master, timeout=30)
            took = time.monotonic() - killed_at
            failed_over.set()
            watcher.join(timeout=30)
            for thread in callers:
                thread.join(timeout=120)
                assert not thread.is_alive(), f"callers still running: {statuses}"
        finally:
            give_up.set()
        after = requests.get(f"{first}/api/v1/health", timeout=10).json()

    print(f"failover took {took:.1f} s; calls {dict(statuses)}; health {dict(health)}")
    assert set(statuses) <= {200, 429, 503}
    assert statuses[200] == LIMIT
    assert statuses[503] > 0, "no call reached the slot while it had no master"
    assert health[503] > 0, "health never reported the cluster degraded"
    assert after["checks"]["redis"]["cluster"]["cluster_state"] == "ok"

    assert new_master.address != killed_master.address
    assert int(new_master.client().get(counter) or 0) == LIMIT
    stamp = new_master.client().get(counter + ":run")
    assert stamp is not None and stamp.decode() == new_master.info("server")["run_id"]
    with cluster_runtime.database.connection() as conn:
        ledger = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s", (customer.account.id,)
        ).fetchone()
    assert ledger == (LIMIT,)
    found = {c.account_id: c for c in check(cluster_runtime, period)}
    assert found[customer.account.id].state is CounterState.IN_STEP
