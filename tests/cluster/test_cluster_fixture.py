"""The Redis Cluster fixture itself: its shape, where keys live, failover, restart, teardown."""

from __future__ import annotations

import itertools
import os
import signal
import time

import psutil
import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from tests.support.redis_cluster import (
    SLOT_COUNT,
    RedisClusterNode,
    RedisClusterServers,
    key_in_slots,
)

pytestmark = [pytest.mark.slow, pytest.mark.own_servers]

# Observed: about 2 s with a node timeout of 1 s (Redis 6.2 and 7.0); the bound leaves room for a
# loaded CI machine.
FAILOVER_TIMEOUT = 15.0


def keys_by_master(cluster: RedisClusterServers, count: int) -> dict[RedisClusterNode, list[str]]:
    """`count` keys spread over all slots, grouped by the master serving each (one lookup)."""
    views = cluster.nodes()[0].cluster_nodes()
    masters = [view for view in views if view.is_master and view.slots]
    grouped: dict[RedisClusterNode, list[str]] = {}
    for i in range(count):
        key = f"before-failover:{i}"
        owner = next(view for view in masters if view.owns(key_slot(key.encode())))
        grouped.setdefault(cluster.node_with_id(owner.node_id), []).append(key)
    return grouped


def test_three_masters_and_three_replicas_serve_every_slot(
    redis_cluster: RedisClusterServers,
) -> None:
    nodes = redis_cluster.nodes()
    assert sorted(node.role for node in nodes) == ["master"] * 3 + ["replica"] * 3
    for node in nodes:
        views = node.cluster_nodes()
        assert len(views) == 6
        masters = [view for view in views if view.is_master]
        ranges = sorted(slots for view in masters for slots in view.slots)
        # Contiguous from 0 to 16383, no gap, no overlap.
        assert ranges[0][0] == 0
        assert ranges[-1][1] == SLOT_COUNT - 1
        assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(ranges))
        assert len(masters) == 3
        assert all(len(view.slots) > 0 for view in masters)
        # One replica per master.
        replicas = [view for view in views if not view.is_master]
        assert sorted(view.master_id or "" for view in replicas) == sorted(
            view.node_id for view in masters
        )
    for node in nodes:
        if node.role == "replica":
            assert node.info("replication")["master_link_status"] == "up"


def test_a_key_lives_on_the_master_that_master_of_names(
    redis_cluster: RedisClusterServers,
) -> None:
    client = redis_cluster.client(decode_responses=True)
    keys = [key_in_slots(first, last, "account") for first, last in [(0, 5460), (5461, 10922)]]
    keys += [key_in_slots(10923, 16383, "account"), "usage:acct_42"]
    for key in keys:
        client.set(key, f"value of {key}")

    masters = {key: redis_cluster.master_of(key) for key in keys}
    assert len({masters[key].port for key in keys[:3]}) == 3, "one key per master"
    for key, master in masters.items():
        assert master.role == "master"
        assert master.client(decode_responses=True).get(key) == f"value of {key}"
        other = next(node for node in redis_cluster.nodes() if node is not master)
        with pytest.raises(redis.exceptions.MovedError):
            other.client().get(key)

    # The URL is what `RedisCluster.from_url` (and so a product setting) takes.
    from_url = RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    assert [from_url.get(key) for key in keys] == [f"value of {key}" for key in keys]
    from_url.close()
    client.close()


def test_killing_a_master_promotes_its_replica_with_the_data(
    fresh_redis_cluster: RedisClusterServers,
) -> None:
    cluster = fresh_redis_cluster
    grouped = keys_by_master(cluster, 300)
    for master, keys in grouped.items():
        # WAIT on the connection that wrote: replication is asynchronous, and a key the replica
        # has not received yet is legitimately lost when its master dies.
        pipe = master.client().pipeline(transaction=False)
        for key in keys:
            pipe.set(key, key.upper())
        pipe.execute_command("WAIT", 1, 1000)
        assert pipe.execute()[-1] == 1, f"{master.address}'s replica did not acknowledge"
    # Opened before the failover, as a running app's client would have been.
    client = cluster.client(decode_responses=True)
    assert client.get("before-failover:0") == "BEFORE-FAILOVER:0"

    doomed = cluster.master_of("before-failover:0")
    (replica,) = cluster.replicas_of(doomed)
    killed_at = time.monotonic()
    killed = cluster.kill_master_of("before-failover:0")
    new_master = cluster.wait_for_failover(killed, timeout=FAILOVER_TIMEOUT)
    took = time.monotonic() - killed_at
    print(f"failover with {cluster.binary}: {took:.2f} s")

    assert killed is doomed
    assert not psutil.pid_exists(killed.pid or -1)
    assert new_master is replica
    assert new_master.role == "master"
    assert cluster.master_of("before-failover:0") is new_master
    every_key = [key for keys in grouped.values() for key in keys]
    assert [client.get(key) for key in every_key] == [key.upper() for key in every_key]
    client.set("before-failover:0", "written after")
    assert new_master.client().get("before-failover:0") == b"written after"
    client.close()


def test_a_restarted_master_rejoins_as_replica_of_its_successor(
    fresh_redis_cluster: RedisClusterServers,
) -> None:
    cluster = fresh_redis_cluster
    killed = cluster.kill_master_of("account:1")
    new_master = cluster.wait_for_failover(killed, timeout=FAILOVER_TIMEOUT)

    started_at = time.monotonic()
    cluster.restart(killed)
    print(f"rejoin with {cluster.binary}: {time.monotonic() - started_at:.2f} s")

    assert killed.role == "replica"
    assert cluster.replicas_of(new_master) == [killed]
    assert cluster.master_of("account:1") is new_master
    assert sorted(node.role for node in cluster.nodes()) == ["master"] * 3 + ["replica"] * 3


def test_heal_brings_back_killed_and_paused_nodes(
    fresh_redis_cluster: RedisClusterServers,
) -> None:
    cluster = fresh_redis_cluster
    master = cluster.master_of("account:1")
    (replica,) = cluster.replicas_of(master)
    other_master = cluster.master_of(key_in_slots(0, 16383, "elsewhere"))
    if other_master is master:
        other_master = next(n for n in cluster.nodes() if n.role == "master" and n is not master)
    cluster.kill(replica)
    assert other_master.pid is not None
    os.kill(other_master.pid, signal.SIGSTOP)

    cluster.heal()

    assert all(node.alive for node in cluster.nodes())
    assert sorted(node.role for node in cluster.nodes()) == ["master"] * 3 + ["replica"] * 3
    client = cluster.client()
    client.set("account:1", "still served")
    assert client.get("account:1") == b"still served"
    client.close()


def test_stop_leaves_no_server_running(fresh_redis_cluster: RedisClusterServers) -> None:
    cluster = fresh_redis_cluster
    pids = [node.pid for node in cluster.nodes()]
    assert all(pids)
    cluster.kill_master_of("account:1")  # a dead node must not trip up stop()

    cluster.stop()
    cluster.stop()  # idempotent; the fixture's teardown stops it a third time

    # By pid and port: redis-server rewrites its command line (no --dir left to look for).
    assert [pid for pid in pids if pid and psutil.pid_exists(pid)] == []
    assert all(node.pid is None for node in cluster.nodes())
    for node in cluster.nodes():
        with pytest.raises(redis.ConnectionError):
            node.admin().ping()  # the admin client does not retry
