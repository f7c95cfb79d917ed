"""A master of the Redis Cluster killed (`kill -9`) under traffic: its replica takes over, and no
call is admitted beyond the limit, before, during or after."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis
import requests

from tests.support.accounts import new_customer
from tests.support.cluster_settings import on_cluster
from tests.support.redis_cluster import RedisClusterError, RedisClusterServers
from tests.support.web import web_process
from timo_hub.platform.redis_client import build_redis_client
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota.admission import (
    ADMIT_LUA,
    FENCE_MILLISECONDS,
    Admitter,
    State,
    counter_keys,
    server_run_id,
)
from timo_hub.quota.period import period_containing
from timo_hub.quota.reconcile import CounterState, check

pytestmark = [pytest.mark.slow, pytest.mark.own_servers]

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
    assert stamp is not None and stamp.decode() == server_run_id(new_master.client())
    with cluster_runtime.database.connection() as conn:
        ledger = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s", (customer.account.id,)
        ).fetchone()
    assert ledger == (LIMIT,)
    found = {c.account_id: c for c in check(cluster_runtime, period)}
    assert found[customer.account.id].state is CounterState.IN_STEP


def test_a_master_demoted_and_promoted_again_does_not_trust_the_counter_it_is_given_back(
    fresh_redis_cluster: RedisClusterServers,
) -> None:
    """Guards over-admission on a failback. Master Y counts two calls that never reach its
    replica X (their replication is cut), X takes over without them, Y rejoins as X's replica and
    is given X's copy, then an operator moves the master back to Y. Y is the same process, so the
    same `run_id` as the stamp beside the counter: trusted by `run_id` alone, the counter would
    re-admit the two lost calls. A server life includes the replication id, new at each
    promotion, so Y's counter is rebuilt instead."""
    cluster = fresh_redis_cluster
    client = build_redis_client(cluster.url, cluster=True)
    admitter = Admitter(client, fence_token="failback")
    account = uuid.uuid4()
    period = period_containing(datetime.now(UTC))
    keys = counter_keys(account, period)
    assert admitter.admit(account, LIMIT, period).state is State.REBUILD
    assert admitter.seed(account, period, 0)
    assert admitter.admit(account, LIMIT, period).used == 1
    y = cluster.master_of(keys.counter)
    (x,) = cluster.replicas_of(y)
    y_client = y.client()
    assert y_client.wait(1, 5000) == 1  # X has the counter at 1

    # Two calls counted on Y that X never gets: X is stopped (SIGSTOP), Y drops its replica
    # link and then counts them, and X, resumed, finds the takeover command waiting on a
    # connection it already has, before it can reconnect to Y and catch up.
    keys_order = (keys.counter, keys.run, keys.fence, keys.leases, keys.burst)
    life = server_run_id(y_client)
    deadline = int(y_client.time()[0] * 1_000_000 + 60_000_000)
    args = (LIMIT, 1, life, deadline, "t", FENCE_MILLISECONDS, "-", -1, 60_000_000)
    assert x.pid is not None
    x_client = x.client()
    x_client.ping()
    os.kill(x.pid, signal.SIGSTOP)
    try:
        pipe = y_client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "KILL", "TYPE", "replica")
        pipe.eval(ADMIT_LUA, 5, *keys_order, *args)
        pipe.eval(ADMIT_LUA, 5, *keys_order, *args)
        _, first, second = pipe.execute()
        takeover = threading.Thread(
            target=lambda: x_client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        )
        takeover.start()
        time.sleep(0.1)
    finally:
        os.kill(x.pid, signal.SIGCONT)
    takeover.join(timeout=10)
    assert (first[0], first[1], second[0], second[1]) == (State.ADMITTED, 2, State.ADMITTED, 3)
    _wait_for(lambda: cluster.master_of(keys.counter).address == x.address, "X takes over")
    assert int(x.client().get(keys.counter) or 0) == 1, "the cut did not lose the two calls"
    _wait_for(
        lambda: y.role == "replica" and y.info("replication")["master_link_status"] == "up",
        "Y rejoins as X's replica",
    )
    # The operator moves the master back (TAKEOVER: at once, without an election to wait for).
    y_client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
    _wait_for(lambda: cluster.master_of(keys.counter).address == y.address, "Y is master again")
    assert int(y_client.get(keys.counter) or 0) == 1
    assert y.info("server")["run_id"] == life.partition(".")[0]  # the same process

    outcome = admitter.admit(account, LIMIT, period)
    stamp = y_client.get(keys.run)
    assert outcome.state is State.REBUILD, (
        f"the given-back counter was trusted: {outcome}; stamp {stamp!r}, seeded under {life}, "
        f"Y now {server_run_id(y_client)}"
    )


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, RedisClusterError, KeyError):
            pass
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)
