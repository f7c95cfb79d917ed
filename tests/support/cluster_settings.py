"""Settings that put Redis on a test Redis Cluster."""

from __future__ import annotations

from tests.support.redis_cluster import RedisClusterServers
from timo_hub.platform.settings import Settings


def on_cluster(settings: Settings, cluster: RedisClusterServers) -> Settings:
    """`settings` with `TIMO_REDIS_CLUSTER=true` on `cluster`; the broker stays the suite's (a
    cluster cannot be one)."""
    return settings.model_copy(
        update={
            "redis_url": cluster.url,
            "redis_cluster": True,
            "broker_url": settings.effective_broker_url,
        }
    )
