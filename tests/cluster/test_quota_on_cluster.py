"""Timo Hub on a Redis Cluster (`TIMO_REDIS_CLUSTER=true`): exact admission across web processes,
one slot per account, invalidations that reach every process, health that reports the cluster."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import redis
import requests
from redis.cluster import key_slot

from tests.support.accounts import new_customer
from tests.support.processes import free_port
from tests.support.redis_cluster import RedisClusterServers
from tests.support.web import web_process
from timo_hub.accounts.cache import publish_invalidation
from timo_hub.people.sign_in_throttle import _keys as sign_in_keys
from timo_hub.platform.redis_client import build_redis_client, describe, node_name
from timo_hub.platform.runtime import Runtime
from timo_hub.platform.settings import Settings
from timo_hub.quota.admission import counter_keys
from timo_hub.quota.period import period_containing
from timo_hub.quota.reconcile import CounterState, check

pytestmark = [pytest.mark.slow, pytest.mark.own_servers]

CALLS = 1100
LIMIT = 1000


def test_every_key_a_script_touches_shares_one_slot(cluster_runtime: Runtime) -> None:
    # Guards CROSSSLOT: a script over keys of two slots is refused by a cluster outright.
    customer = new_customer(cluster_runtime, plan="free")
    keys = counter_keys(customer.account.id, period_containing(datetime.now(UTC)))
    names = [keys.counter, keys.run, keys.fence, keys.seeded, keys.takebacks, keys.leases]
    names += [keys.burst, keys.undo()]
    assert len({key_slot(name.encode()) for name in names}) == 1
    throttle = sign_in_keys("someone", "203.0.113.9")
    assert (
        len({key_slot(k.encode()) for k in (throttle.pair, throttle.address, throttle.person)}) == 1
    )


def test_calls_over_two_servers_on_a_cluster_admit_exactly_the_limit(
    cluster_settings: Settings, cluster_runtime: Runtime, redis_cluster: RedisClusterServers
) -> None:
    """1,100 concurrent calls over two gunicorn servers (two processes each) against a free
    plan's 1,000-call month, its counter on one master of three: exactly 1,000 admitted, each
    remaining value once, and the counter, on the master that serves its slot, equals the
    ledger."""
    customer = new_customer(cluster_runtime, plan="free", burst="unlimited")
    period = period_containing(datetime.now(UTC))
    local = threading.local()

    with (
        web_process(cluster_settings, workers=2) as first,
        web_process(cluster_settings, workers=2) as second,
    ):
        bases = [first, second]

        def call(i: int) -> tuple[int, int]:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            response = session.get(
                f"{bases[i % 2]}/api/v1/account/quota", headers=customer.auth, timeout=30
            )
            return response.status_code, int(response.headers["X-RateLimit-Remaining"])

        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(call, range(CALLS)))

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: LIMIT, 429: CALLS - LIMIT}
    remaining = sorted((r for status, r in results if status == 200), reverse=True)
    assert remaining == list(range(LIMIT - 1, -1, -1))

    counter = counter_keys(customer.account.id, period).counter
    master = redis_cluster.master_of(counter)
    assert int(master.client().get(counter) or 0) == LIMIT
    assert node_name(cluster_runtime.redis, counter) == master.address
    with cluster_runtime.database.connection() as conn:
        ledger = conn.execute(
            "SELECT used FROM quota_usage WHERE account_id = %s", (customer.account.id,)
        ).fetchone()
    assert ledger == (LIMIT,)
    found = {c.account_id: c for c in check(cluster_runtime, period)}
    assert found[customer.account.id].state is CounterState.IN_STEP


def test_a_revocation_reaches_every_web_process_on_a_cluster(
    cluster_settings: Settings, cluster_runtime: Runtime
) -> None:
    """Guards the auth cache on a cluster: it must be on in every process (listening on the node
    that holds the invalidation epoch) and an invalidation announced there must reach them all
    within a second. A key revoked in PostgreSQL alone is still accepted by a process whose cache
    holds it, which shows the cache is on; the announcement then makes every process refuse it."""
    customer = new_customer(cluster_runtime, plan="developer")
    with web_process(cluster_settings) as first, web_process(cluster_settings) as second:
        doomed = requests.post(
            f"{first}/api/v1/auth/keys", headers=customer.auth, json={"name": "doomed"}, timeout=5
        ).json()
        doomed_auth = {"Authorization": f"Bearer {doomed['key']}"}
        for base in (first, second):
            for _ in range(3):
                response = requests.get(f"{base}/api/v1/account", headers=doomed_auth, timeout=5)
                assert response.status_code == 200
        with cluster_runtime.database.connection() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (doomed["id"],))
        for base in (first, second):  # cached, so still accepted: each process's cache is on
            response = requests.get(f"{base}/api/v1/account", headers=doomed_auth, timeout=5)
            assert response.status_code == 200
        assert publish_invalidation(cluster_runtime.redis, key_id=uuid.UUID(doomed["id"]))
        announced = time.monotonic()
        for base in (first, second):
            while True:
                status = requests.get(
                    f"{base}/api/v1/account", headers=doomed_auth, timeout=5
                ).status_code
                if status == 401:
                    break
                assert status == 200
                assert time.monotonic() - announced < 1.0, f"{base} accepted it after 1 s"
                time.sleep(0.005)
        for base in (first, second):
            assert requests.get(f"{base}/api/v1/account", headers=customer.auth, timeout=5).ok


def test_a_process_starts_while_a_node_it_names_is_down(redis_cluster: RedisClusterServers) -> None:
    """Guards a process that cannot start: the cluster client asks for the map at once, so the
    URL names several nodes and the first that answers is enough; when none does, the failure is
    a RedisError (answered 503), not redis-py's RedisClusterException (a 500)."""
    dead = f"127.0.0.1:{free_port()}"
    alive = redis_cluster.url.removeprefix("redis://").partition("/")[0]
    client = build_redis_client(f"redis://{dead},{alive}/0", cluster=True)
    assert describe(client)["cluster_state"] == "ok"
    with pytest.raises(redis.ConnectionError):
        build_redis_client(f"redis://{dead}/0", cluster=True)


def test_health_reports_the_clusters_state(
    cluster_settings: Settings, cluster_runtime: Runtime
) -> None:
    with web_process(cluster_settings) as base:
        body = requests.get(f"{base}/api/v1/health", timeout=5).json()
    assert body["status"] == "ok"
    redis_check = body["checks"]["redis"]
    assert redis_check["status"] == "up"
    assert redis_check["cluster"] == {
        "cluster_state": "ok",
        "slots_served": 16384,
        "masters": 3,
        "known_nodes": 6,
    }
