"""Fixtures: a real Redis Cluster (3 masters, 3 replicas) of `redis-server` processes on 127.0.0.1.

`redis_cluster` is one cluster for the whole session, healed and emptied before each test: a test
may kill or pause its nodes, and the next test finds them running again (though a killed master
comes back as a replica, so roles may differ from the initial ones). A test that needs the initial
topology, or does damage `heal()` cannot undo, takes `fresh_redis_cluster`: a cluster of its own
(about 2 s to start) that is torn down after the test. When a test fails, the
end of every node's log is attached to its report. See `tests.support.redis_cluster` for the binary
(`TIMO_TEST_REDIS_SERVER_BINARY`) and the API.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.cluster_settings import on_cluster
from tests.support.redis_cluster import RedisClusterServers
from timo_hub.platform.runtime import Runtime, build_runtime
from timo_hub.platform.settings import Settings

CLUSTER_FIXTURES = ("redis_cluster", "fresh_redis_cluster")


@pytest.fixture(scope="session")
def shared_redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterServers]:
    """The session's cluster; use it through `redis_cluster`."""
    with RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(shared_redis_cluster: RedisClusterServers) -> RedisClusterServers:
    """The session's cluster: every node running, the cluster healthy, every master empty."""
    # Cheap when nothing happened (one round of checks); a restart when a test killed a node.
    shared_redis_cluster.heal()
    shared_redis_cluster.flushall()
    return shared_redis_cluster


@pytest.fixture
def fresh_redis_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A cluster for this test alone, to kill nodes of; stopped (every process reaped) after it."""
    with RedisClusterServers(tmp_path / "redis-cluster") as cluster:
        yield cluster


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the nodes' log tails to the report of a failed test that used a cluster."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in CLUSTER_FIXTURES:
            cluster = funcargs.get(name)
            if isinstance(cluster, RedisClusterServers):
                report.sections.append((f"redis cluster logs ({name})", cluster.log_tails()))
    return report


@pytest.fixture
def cluster_settings(
    settings: Settings, runtime: Runtime, redis_cluster: RedisClusterServers
) -> Settings:
    """The suite's settings with `TIMO_REDIS_CLUSTER=true` on the session's cluster (the broker
    stays the suite's: a cluster cannot be one). Takes `runtime` for its emptied database."""
    return on_cluster(settings, redis_cluster)


@pytest.fixture
def cluster_runtime(cluster_settings: Settings) -> Iterator[Runtime]:
    """A runtime whose Redis is the cluster of `cluster_settings`."""
    runtime = build_runtime(cluster_settings)
    yield runtime
    runtime.close()
