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
import threading
import time
from typing import Any, TypeAlias, cast

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


def build_redis_client(url: str, *, cluster: bool) -> AnyRedis:
    """A client of the server at `url`, or of the cluster that node belongs to; no I/O until used
    (redis-py's pools notice a fork and reconnect in the child by themselves)."""
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
    # The cluster client discovers every node from this one, on first use. A slot whose master
    # is down answers an error until its replica takes over; the client then re-reads the map.
    return RedisCluster.from_url(url, require_full_coverage=False, **options)


def is_cluster(client: AnyRedis) -> TypeIs[RedisCluster]:
    """Whether `client` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def node_client(client: AnyRedis, key: str) -> redis.Redis:
    """A client of the one server that holds `key` (on a single server: `client` itself)."""
    if not is_cluster(client):
        return client
    return client.get_redis_connection(_node_of(client, key))


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

    At most one refresh per `REFRESH_INTERVAL_SECONDS` per client unless `force`: every thread
    that saw the same failover does not need its own.
    """
    if not is_cluster(client):
        return
    # Threads that find a refresh under way go on: theirs would learn the same map.
    if not _refresh_lock.acquire(blocking=False):
        return
    try:
        now = time.monotonic()
        if not force and now - _refreshed_at.get(id(client), -1e9) < REFRESH_INTERVAL_SECONDS:
            return
        _refreshed_at[id(client)] = now
        try:
            client.nodes_manager.initialize()
        except (redis.RedisError, RedisClusterException) as exc:
            # Best effort: the caller is already failing over a node; the next failure retries.
            logger.warning("redis cluster: could not re-read the slot map: %s", exc)
    finally:
        _refresh_lock.release()


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
