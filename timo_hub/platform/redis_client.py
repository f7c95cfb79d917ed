"""The process's Redis: one server (the default), or a Redis Cluster (`TIMO_REDIS_CLUSTER=true`).

Everything the product keeps in Redis is either one account's (hash-tagged by account id, so all
of an account's keys share one slot and each script runs whole on one node), a few keys under one
hash tag (the sign-in throttle's), or a single key of its own (the auth cache's epoch, a session, a
heartbeat). So on a cluster every multi-key script stays on one node, and the callers that bypass
redis-py's command layer (the hot path's admission) or need one node's view (its server life, a
pub/sub subscription) ask `node_client` for the node serving a key.

On a cluster, a node that stops answering or answers MOVED means the slot map changed (a failover,
a resharding): `refresh_topology` re-reads it, at most every `REFRESH_INTERVAL_SECONDS` however many
threads saw the failure.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, TypeAlias, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from typing_extensions import TypeIs

logger = logging.getLogger(__name__)

AnyRedis: TypeAlias = redis.Redis | RedisCluster

SOCKET_TIMEOUT_SECONDS = 2.0
REFRESH_INTERVAL_SECONDS = 0.25
CLUSTER_SLOTS = 16384

_refresh_lock = threading.Lock()
_refreshed_at: dict[int, float] = {}


def _forget_refreshes() -> None:
    # A child forked while a parent thread held the lock would otherwise never refresh.
    global _refresh_lock
    _refresh_lock = threading.Lock()
    _refreshed_at.clear()


os.register_at_fork(after_in_child=_forget_refreshes)


class _Cluster(RedisCluster):
    """redis-py's cluster client, whose every failure is a `RedisError`.

    When it cannot learn the cluster's map at all (every node it knows is down) it raises
    `RedisClusterException`, which is not one; every caller of ours treats an unreachable Redis
    as a `RedisError` (503, retry later, keep a lease to end later), so here it becomes one.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"Redis Cluster unreachable: {exc}") from exc


def build_redis_client(url: str, *, cluster: bool) -> AnyRedis:
    """A client of the server at `url`, or of the cluster its nodes belong to.

    A single server's client does no I/O until used (redis-py's pools notice a fork and
    reconnect in the child by themselves). A cluster's asks the first node of `url` that
    answers for the cluster's map at once: name several (`redis://h1:7000,h2:7000,h3:7000/0`) so
    that a process can start while one of them is down.
    """
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        # One immediate retry replaces a pooled connection a Redis restart killed; more, with
        # redis-py's default backoff, would hold a request for seconds when Redis is down.
        "retry": Retry(NoBackoff(), 1),
    }
    if not cluster:
        return redis.Redis.from_url(url, **options)
    first, nodes = cluster_nodes_of(url)
    try:
        # A slot whose master is down answers an error until its replica takes over; the client
        # then re-reads the map.
        return _Cluster.from_url(first, startup_nodes=nodes, require_full_coverage=False, **options)
    except RedisClusterException as exc:
        raise redis.ConnectionError(f"no node of {len(nodes)} named answers: {exc}") from exc


def cluster_nodes_of(url: str) -> tuple[str, list[ClusterNode]]:
    """`url` with only its first node, and every node it names (`host:port`, comma-separated)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = []
    for address in hosts.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or "]" in port:  # no port (an IPv6 address in brackets has colons)
            host, port = address.strip(), "6379"
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    first = urlunsplit(parts._replace(netloc=userinfo + at + hosts.split(",")[0].strip()))
    return first, nodes


def is_cluster(client: AnyRedis) -> TypeIs[RedisCluster]:
    """Whether `client` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def node_client(client: AnyRedis, key: str) -> redis.Redis:
    """A client of the one server that holds `key` (on a single server: `client` itself)."""
    if not is_cluster(client):
        return client
    return client.get_redis_connection(_node_of(client, key))


def named_node_client(client: RedisCluster, key: str) -> tuple[str, redis.Redis]:
    """The `host:port` of the node that holds `key`, and a client of it."""
    node = _node_of(client, key)
    return str(node.name), client.get_redis_connection(node)


def node_name(client: AnyRedis, key: str) -> str:
    """The `host:port` of the server that holds `key` ("" on a single server)."""
    if not is_cluster(client):
        return ""
    return str(_node_of(client, key).name)


def _node_of(client: RedisCluster, key: str) -> ClusterNode:
    try:
        return client.get_node_from_key(key)
    except RedisClusterException as exc:
        # Not a RedisError (a slot no node serves in the map this process holds): for callers
        # it is the same as an unreachable server, so it gets the same 503 and the same retry.
        raise redis.ConnectionError(f"no node serves this key's slot yet: {exc}") from exc


def refresh_topology(client: AnyRedis, *, force: bool = False) -> None:
    """Re-read a cluster's slot map (a node failed or moved a slot); nothing on a single server.

    Without `force`, the map is re-read in a thread of its own (a dead node can cost the reader
    a connect timeout, which a request must not wait for), at most once per
    `REFRESH_INTERVAL_SECONDS` per client: every thread that saw the same failover does not need
    its own. With `force`, now, in the caller's thread (a batch about to read many accounts).
    """
    if not is_cluster(client):
        return
    if force:
        _refresh(client, wait=True)
        return
    if time.monotonic() - _refreshed_at.get(id(client), -1e9) < REFRESH_INTERVAL_SECONDS:
        return
    threading.Thread(target=_refresh, args=(client,), name="redis-cluster-map", daemon=True).start()


def _refresh(client: RedisCluster, wait: bool = False) -> None:
    # Threads that find a refresh under way go on (unless they must wait for it): theirs would
    # learn the same map.
    if not _refresh_lock.acquire(blocking=wait):
        return
    try:
        _refreshed_at[id(client)] = time.monotonic()
        client.nodes_manager.initialize()
    except (redis.RedisError, RedisClusterException) as exc:
        # Best effort: the caller is already failing over a node; the next failure retries.
        logger.warning("redis cluster: could not re-read the slot map: %s", exc)
    finally:
        _refresh_lock.release()


def learn_moved_slot(client: AnyRedis, moved: redis.exceptions.MovedError) -> None:
    """Point the slot a `MOVED` answer names at the node it names (no I/O), and re-read the
    whole map in the background (a failover moves many slots at once)."""
    if not is_cluster(client):
        return
    try:
        client.nodes_manager.move_slot(moved)
    except (redis.RedisError, RedisClusterException, KeyError) as exc:
        logger.warning("redis cluster: could not follow a MOVED answer: %s", exc)
    refresh_topology(client)


def close_client(client: AnyRedis) -> None:
    """Close every connection of `client`."""
    if is_cluster(client):
        client.close()
    else:
        client.connection_pool.disconnect()


class ClusterDegraded(redis.RedisError):
    """A Redis Cluster answers but does not serve every slot (a master is down and has no
    replica to take over, or a failover is under way)."""


def describe(client: AnyRedis) -> dict[str, Any]:
    """What health reports about Redis beyond up/down: nothing for a single server (a PING), and
    for a cluster its state as the first node that answers sees it (`cluster_state`, slots served,
    masters, replicas). Raises `ClusterDegraded` when a cluster does not serve every slot."""
    if not is_cluster(client):
        client.ping()
        return {}
    info: dict[str, Any] | None = None
    failure: Exception | None = None
    for node in client.get_primaries() + client.get_replicas():
        try:
            info = client.cluster_info(target_nodes=cast(Any, node))
            break
        except redis.RedisError as exc:  # that node is down: ask another
            failure = exc
    if info is None:
        refresh_topology(client)
        raise failure or redis.ConnectionError("no node of the cluster is known")
    state = str(info.get("cluster_state", "unknown"))
    served = int(info.get("cluster_slots_ok", 0))
    if state != "ok" or served < CLUSTER_SLOTS:
        refresh_topology(client)
        raise ClusterDegraded(f"cluster {state}, {served} of {CLUSTER_SLOTS} slots served")
    return {
        "cluster_state": state,
        "slots_served": served,
        "masters": int(info.get("cluster_size", 0)),
        "known_nodes": int(info.get("cluster_known_nodes", 0)),
    }


def group_by_node(client: AnyRedis, keys: list[str]) -> list[tuple[redis.Redis, list[int]]]:
    """The positions of `keys` grouped by the server that holds each, with that server's client:
    a plain pipeline per server then reads many accounts' keys in one round trip each (a cluster
    pipeline refuses MGET and scripts). On a single server: one group of every position.

    On a cluster the slot map is re-read first."""
    if not is_cluster(client):
        return [(client, list(range(len(keys))))]
    # A batch (reconcile, a minute apart) starts from the cluster's map as it is now: one that
    # saw no failure since a failover would still send it to the dead master.
    refresh_topology(client, force=True)
    groups: dict[str, tuple[redis.Redis, list[int]]] = {}
    for position, key in enumerate(keys):
        node = _node_of(client, key)
        if node.name not in groups:
            groups[node.name] = (client.get_redis_connection(node), [])
        groups[node.name][1].append(position)
    return list(groups.values())
