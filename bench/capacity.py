"""Capacity inputs: what one process of each kind does with one core, measured on this machine.

The inputs of docs/capacity.md, as CPU time (steadier than wall time on a shared, noisy machine),
with the wall figures beside where they are cheap. Each figure is a median over `--rounds` rounds
and is printed with what it is derived from.

* **web**: `GET /api/v1/account/quota` served as `bench/hot_path.py` serves (c) (production
  settings, gunicorn with the product's config, 2 buffering workers, a Celery worker at nice 19
  ingesting), driven by wrk at 32 connections, alternating with bare Flask (hot_path.py's (a),
  the machine's yardstick), for two kinds of traffic: one account (its calls leased from Redis a
  batch at a time, `timo_hub/quota/leases.py`) and `--accounts`
  accounts taken in turn on a plan whose burst limit (1,999 a minute) leaves no room for a lease
  (the admission script grants a lease only when a thousandth of what the window has left is 2
  or more), so that every call is one admission script in Redis, as for an account called less
  than once a second per web process. Measured over the loaded run: the web host's CPU
  (gunicorn master, workers, threads), the quota Redis's (`used_cpu_sys + used_cpu_user` from
  INFO) and its commands, PostgreSQL's (the postmaster and every backend, exited ones included)
  and the broker's. Then the admission script alone in a busy Redis (redis-benchmark, 50
  clients), where each call no longer pays for a wake-up of its own.
* **ingest**: `--events` events a round (1,000 a message, as web processes ship them) ingested by
  one worker process (`--pool solo`), started and idle before the first message is sent: its CPU
  and PostgreSQL's per event, events/s by wall clock (first commit to last), WAL bytes per event,
  and the log's bytes on disk per event (the month's partition with its indexes).
* **forecast**: `run_all` (a nightly chunk task's work, in batches) for
  `--forecast-accounts` accounts with 120 days of history and as many with 365 (the most a
  forecast reads), in a fresh process per round with one BLAS thread (as the web sets it) and
  with BLAS's default (what a Celery worker has today), alternating: CPU seconds (that process,
  all threads) and PostgreSQL's per account, and wall seconds.
* **storage**: Redis bytes per account (`MEMORY USAGE` of every key of each account after the web
  runs, and `used_memory` per account), `usage_daily` bytes per row, a batch message's size.

Always on embedded servers started here under a temporary TIMO_HOME (TIMO_DATABASE_URL,
TIMO_REDIS_URL and TIMO_BROKER_URL are ignored): the figures read each server's CPU from its
processes or its INFO, which a remote or shared server would not give. The broker is a Redis
server of its own, so the quota Redis's figures are the quota's alone. Unix sockets throughout.

Run: `make bench-capacity` (about 5 minutes; wrk and Flask-Limiter as for bench-hot-path).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from kombu import compression  # noqa: E402

from bench import analytics, hot_path, ingest  # noqa: E402
from events import projection_rebuild  # noqa: E402
from events.partitions import PartitionRegistry  # noqa: E402
from events.publisher import BATCH_SIZE, EVENTS_QUEUE  # noqa: E402
from timo_hub.accounts import service, store  # noqa: E402
from timo_hub.platform.db import Database  # noqa: E402
from timo_hub.platform.embedded import EmbeddedRedis, release_services, resolve_services  # noqa: E402
from timo_hub.platform.months import month_start  # noqa: E402
from timo_hub.platform.runtime import Runtime, build_runtime  # noqa: E402
from timo_hub.platform.settings import Settings, broker_url_for_redis  # noqa: E402
from timo_hub.quota.admission import ADMIT_LUA  # noqa: E402
from timo_hub.usage import forecasts  # noqa: E402

SERVICE_URLS = ("TIMO_DATABASE_URL", "TIMO_REDIS_URL", "TIMO_BROKER_URL", "TIMO_REDIS_CLUSTER")
# wrk's Lua: each request takes the next key of the file, round robin.
UNLEASED_LUA = """
local keys = {}
for line in io.lines("KEYS_FILE") do keys[#keys + 1] = line end
local n = 0
request = function()
  n = n % #keys + 1
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. keys[n]})
end
"""
# The event log's partitions on disk (heap, TOAST and indexes).
LOG_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint
FROM pg_inherits WHERE inhparent = 'events'::regclass
"""
# Limits no run reaches (200 accounts share at most ~6,000 calls/s here, so under 1,999 a minute
# each), with a burst window too small for leases.
UNLEASED_PLAN = ("capacity-unleased", "Capacity (no leases)", 10**12, 1999, 60)
FORECAST_PLAN = "starter"
FORECAST_CALLS_PER_DAY = 100
FORECAST_HISTORIES = (120, 365)


@dataclass(frozen=True)
class Servers:
    """The embedded servers' URLs and how to read their CPU."""

    settings: Settings
    postmaster_pid: int
    quota_redis: redis.Redis
    broker_redis: redis.Redis

    def postgres_cpu(self) -> float:
        """CPU seconds of the postmaster and all its children (exited backends included)."""
        return postgres_cpu(self.postmaster_pid)

    def quota_redis_cpu(self) -> float:
        """CPU seconds of the quota Redis (its INFO's used_cpu_sys + used_cpu_user)."""
        return _redis_cpu(self.quota_redis)

    def broker_cpu(self) -> float:
        """CPU seconds of the broker's Redis."""
        return _redis_cpu(self.broker_redis)

    def quota_redis_commands(self) -> float:
        """Commands the quota Redis has processed."""
        return float(self.quota_redis.info("stats")["total_commands_processed"])


def postgres_cpu(postmaster_pid: int) -> float:
    """CPU seconds of a postmaster and all its children (exited backends included)."""
    postmaster = psutil.Process(postmaster_pid)
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


def _redis_cpu(client: redis.Redis) -> float:
    """CPU seconds a Redis server has used, all its threads (INFO used_cpu_sys + _user)."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main() -> None:
    """Measure each part, alternating where there are two kinds, and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="of web load per run")
    parser.add_argument("--accounts", type=int, default=200, help="web: the unleased traffic's")
    parser.add_argument("--events", type=int, default=40_000, help="ingest: per round")
    parser.add_argument("--forecast-accounts", type=int, default=5, help="per history length")
    parser.add_argument("--forecast-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.forecast_child:
        _forecast_child()
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench-capacity` installs it (apt-get)")
    for name in SERVICE_URLS:
        os.environ.pop(name, None)
    # Production refuses the development pepper; keys must be hashed under the servers' one.
    os.environ.setdefault("TIMO_KEY_PEPPER", hot_path.BENCH_PEPPER)
    home = Path(tempfile.mkdtemp(prefix="timo-bench-capacity-"))
    broker = EmbeddedRedis(home / "broker")
    try:
        broker_url = broker_url_for_redis(broker.acquire())
        settings = resolve_services(Settings.from_env(home=home))
        settings = settings.model_copy(update={"broker_url": broker_url})
        postmaster = int((home / "postgres" / "postmaster.pid").read_text().split()[0])
        servers = Servers(
            settings,
            postmaster,
            redis.Redis.from_url(settings.redis_url or "", decode_responses=True),
            redis.Redis(unix_socket_path=str(broker.socket), decode_responses=True),
        )
        _print_header(servers, args)
        web, saturated_us = _measure_web(servers, home, args)
        ingested = _measure_ingest(servers, home, args)
        forecast = _measure_forecast(servers, args)
        _print_derived(web, saturated_us, ingested, forecast)
    finally:
        broker.release()
        release_services(home)
        shutil.rmtree(home, ignore_errors=True)


def _print_header(servers: Servers, args: argparse.Namespace) -> None:
    """When, which code, which machine and servers."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = (
        " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    )
    with psycopg.connect(servers.settings.database_url or "") as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    redis_version = servers.quota_redis.info("server")["redis_version"]
    print(
        f"capacity inputs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}{dirty}; "
        f"{psutil.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; embedded PostgreSQL "
        f"{pg_version}, Redis {redis_version} (Unix sockets); {args.rounds} rounds, medians",
        flush=True,
    )


def _git(*command: str) -> str:
    """A git command's output in this checkout ("" outside one)."""
    result = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip()


# ---- web ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebRun:
    """One gunicorn run under load, and the servers' shares of it, per request."""

    rps: float
    web_us: float
    redis_us: float
    redis_commands: float
    postgres_us: float
    broker_us: float
    logged: float  # events ingested into the log during the run, per request
    non_2xx: int


def _measure_web(
    servers: Servers, home: Path, args: argparse.Namespace
) -> tuple[dict[str, list[WebRun]], float | None]:
    """The web runs, alternating, with the servers' CPU beside; Redis memory and saturation."""
    env = hot_path.prepare_servers(servers.settings)
    secrets = _create_accounts(servers.settings, args.accounts)
    keys_file = home / "unleased-keys.txt"
    keys_file.write_text("\n".join(secrets) + "\n")
    script = home / "unleased.lua"
    script.write_text(UNLEASED_LUA.replace("KEYS_FILE", str(keys_file)))
    url = servers.settings.database_url or ""
    # Read in this order before the run and in the reverse order after it: the count's own
    # query stays outside PostgreSQL's figure.
    meters: dict[str, Callable[[], float]] = {
        "logged": lambda: float(ingest.count_events(url)),
        "postgres": servers.postgres_cpu,
        "redis": servers.quota_redis_cpu,
        "redis commands": servers.quota_redis_commands,
        "broker": servers.broker_cpu,
    }
    wrk = argparse.Namespace(seconds=args.seconds, connections=32, workers=2, threads=1)
    kinds = {
        # The VM's yardstick: what a request costs with nothing metered (hot_path.py's a).
        "bare Flask": {"server": "a", "warmup_seconds": 2},
        "1 account": {"server": "c", "warmup_seconds": 2},
        # Long enough for each web worker to have seen every key (its auth cache) and Redis to
        # hold every account's counter (seeded from PostgreSQL at its first call).
        f"{args.accounts:,} accounts": {"server": "c", "warmup_seconds": 3, "wrk_script": script},
    }
    unleased = list(kinds)[-1]
    memory = ""
    memory_before = int(servers.quota_redis.info("memory")["used_memory"])
    runs: dict[str, list[WebRun]] = {kind: [] for kind in kinds}
    commands: dict[str, dict[str, tuple[int, int]]] = {kind: {} for kind in kinds}
    print(
        f"\nweb: GET /api/v1/account/quota, gunicorn 2 workers (buffering), wrk 32 connections "
        f"for {args.seconds} s; bare Flask (nothing metered: the VM's yardstick), 1 account "
        f"(leased) and {args.accounts:,} accounts in turn (no leases: one admission in Redis per "
        "call), alternating"
    )
    print(
        f"{'round':<6}{'traffic':<16}{'req/s':>7}{'web CPU':>9}{'Redis CPU':>11}"
        f"{'Redis cmds':>12}{'PG CPU':>8}{'logged':>8}{'broker':>8}{'non-2xx':>9}"
    )
    print(
        f"{'':<6}{'':<16}{'wall':>7}{'us/req':>9}{'us/req':>11}{'per req':>12}{'us/req':>8}"
        f"{'ev/req':>8}{'us/req':>8}{'':>9}"
    )
    with hot_path.celery_worker(env):
        for round_ in range(args.rounds):
            order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
            for kind in order:
                options = kinds[kind]
                stats_before = servers.quota_redis.info("commandstats")
                result = hot_path.serve_and_measure(
                    options["server"],  # type: ignore[arg-type]
                    env,
                    "buffering",
                    wrk,
                    wrk_script=options.get("wrk_script"),  # type: ignore[arg-type]
                    warmup_seconds=options["warmup_seconds"],  # type: ignore[arg-type]
                    meters=meters,
                )
                per = 1e6 / result.requests
                run = WebRun(
                    result.rps,
                    result.cpu_us,
                    result.meters["redis"] * per,
                    result.meters["redis commands"] / result.requests,
                    result.meters["postgres"] * per,
                    result.meters["broker"] * per,
                    result.meters["logged"] / result.requests,
                    result.non_2xx,
                )
                runs[kind].append(run)
                _add_command_calls(
                    commands[kind], stats_before, servers.quota_redis.info("commandstats")
                )
                if kind == unleased and round_ == args.rounds - 1:
                    # Now, while the accounts' burst windows are open (their hashes expire a
                    # second after the window).
                    memory = _redis_memory(servers, memory_before, args.accounts + 1)
                print(
                    f"{round_ + 1:<6}{kind:<16}{run.rps:>7.0f}{run.web_us:>9.0f}"
                    f"{run.redis_us:>11.1f}{run.redis_commands:>12.3f}{run.postgres_us:>8.1f}"
                    f"{run.logged:>8.2f}{run.broker_us:>8.1f}{run.non_2xx:>9}",
                    flush=True,
                )
    for kind, kind_runs in runs.items():
        web_us = _median(r.web_us for r in kind_runs)
        redis_us = _median(r.redis_us for r in kind_runs)
        if kinds[kind]["server"] == "a":
            print(
                f"median {kind}: {_median(r.rps for r in kind_runs):,.0f} req/s on this VM; web "
                f"{web_us:.0f} us/req; rounds: {_rounds(r.web_us for r in kind_runs)}"
            )
            continue
        print(
            f"median {kind}: {_median(r.rps for r in kind_runs):,.0f} req/s on this VM; web "
            f"{web_us:.0f} us/req -> {1e6 / web_us:,.0f} req/s per web worker core; Redis "
            f"{redis_us:.1f} us/req -> {1e6 / redis_us:,.0f} req/s per Redis core; "
            f"{_median(r.redis_commands for r in kind_runs):.3f} Redis commands/req"
        )
        # Each command's share of the whole runs (warm-up and all), applied to the loaded runs'
        # commands per request.
        per_request = _median(r.redis_commands for r in kind_runs)
        total = sum(calls for calls, _ in commands[kind].values())
        top = sorted(commands[kind].items(), key=lambda item: -item[1][0])[:6]
        shares = ", ".join(f"{name} {per_request * calls / total:.3f}" for name, (calls, _) in top)
        calls, usec = commands[kind].get("evalsha", (0, 0))
        print(
            f"  Redis commands per request (those a script runs included): {shares}; EVALSHA "
            f"{usec / max(calls, 1):.1f} us a call by Redis's own timing (commandstats)"
        )
        print(f"  rounds' web CPU us/req: {_rounds(r.web_us for r in kind_runs)}")
        print(f"  rounds' Redis CPU us/req: {_rounds([r.redis_us for r in kind_runs], '.1f')}")
    print(memory)
    return runs, _measure_redis_saturation(servers, args.rounds)


def _measure_redis_saturation(servers: Servers, rounds: int, calls: int = 100_000) -> float | None:
    """The admission script alone at 50 concurrent clients (redis-benchmark, no pipelining):
    Redis's CPU per admission when busy, where the web runs above measure it at a few thousand
    a second (one admission per wake-up of its event loop)."""
    if shutil.which("redis-benchmark") is None:
        print("saturated admissions: skipped (no redis-benchmark; Debian's redis-tools has it)")
        return None
    client = servers.quota_redis
    # An account's month counter, as the web runs left it (the script makes its burst window).
    counter = next(
        key
        for key in client.scan_iter(match="timo:quota:{*}:*", count=1000)
        if key.count(":") == 3 and client.exists(key + ":run")
    )
    keys = [counter, *(counter + suffix for suffix in (":run", ":fence", ":leases", ":burst"))]
    sha = client.script_load(ADMIT_LUA)
    # Limits no call reaches, a deadline far off, no lease: every call counted in the month and
    # its minute, as an admission without a lease is.
    argv = [10**12, 1, client.get(keys[1]), 10**17, "x", 1000, "capacity:1", 10**12, 60_000_000]
    socket = urlsplit(servers.settings.redis_url or "").path
    command = ["redis-benchmark", "-s", socket, "-n", str(calls), "-c", "50", "-P", "1", "-q"]
    command += ["EVALSHA", sha, "5", *keys, *map(str, argv)]
    used = []
    for _ in range(rounds):
        before = servers.quota_redis_cpu()
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        used.append((servers.quota_redis_cpu() - before) / calls * 1e6)
        rps = float(re.findall(r"([\d.]+) requests per second", output)[-1])
    us = _median(used)
    print(
        f"saturated admissions (redis-benchmark, 50 clients, the admission script on one "
        f"account's keys): Redis {us:.1f} CPU us a call -> {1e6 / us:,.0f} admissions/s per "
        f"Redis core ({rps:,.0f}/s by wall clock here, client on the same 2 cores); rounds: "
        f"{_rounds(used, '.1f')}"
    )
    return us


def _add_command_calls(
    into: dict[str, tuple[int, int]],
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
) -> None:
    """Add each command's calls and µs between two INFO commandstats readings to `into`."""
    for name, stats in after.items():
        calls = int(stats["calls"]) - int(before.get(name, {}).get("calls", 0))
        usec = int(stats["usec"]) - int(before.get(name, {}).get("usec", 0))
        if calls:
            command = name.removeprefix("cmdstat_")
            known_calls, known_usec = into.get(command, (0, 0))
            into[command] = (known_calls + calls, known_usec + usec)


def _create_accounts(settings: Settings, count: int) -> list[str]:
    """`count` accounts on the unleased plan, a key each; returns their secrets."""
    secrets = []
    with psycopg.connect(settings.database_url or "") as conn, conn.transaction():
        conn.execute(
            "INSERT INTO plans (name, display_name, monthly_limit, sort_order, burst_limit, "
            "burst_window_seconds) VALUES (%s, %s, %s, 98, %s, %s) ON CONFLICT (name) DO NOTHING",
            UNLEASED_PLAN,
        )
        for _ in range(count):
            account = store.create_account(
                conn, f"capacity-{uuid.uuid4().hex}@example.com", UNLEASED_PLAN[0]
            )
            issued = store.insert_key(conn, account.id, "capacity", settings.key_pepper)
            secrets.append(issued.secret)
    return secrets


def _redis_memory(servers: Servers, memory_before: int, accounts: int) -> str:
    """Bytes per account in the quota Redis: each account's keys (all hash-tagged by account)."""
    client = servers.quota_redis
    by_account: dict[str, list[str]] = {}
    for key in client.scan_iter(match="*{*}*", count=1000):
        tag = key.split("{", 1)[1].split("}", 1)[0]
        by_account.setdefault(tag, []).append(key)
    pipe = client.pipeline(transaction=False)
    for keys in by_account.values():
        for key in keys:
            pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
    sizes = iter(pipe.execute())
    per_account = [
        (len(keys), sum(int(next(sizes) or 0) for _ in keys)) for keys in by_account.values()
    ]
    used = int(client.info("memory")["used_memory"]) - memory_before
    suffixes = sorted({key.rsplit("}", 1)[1] for keys in by_account.values() for key in keys})
    counter = next((k for keys in by_account.values() for k in keys if k.count(":") == 3), None)
    ttl = client.ttl(counter) if counter else -2
    keys_median = _median(n for n, _ in per_account)
    bytes_median = _median(b for _, b in per_account)
    return (
        f"Redis per account: {len(by_account):,} accounts with keys, median "
        f"{keys_median:.0f} keys and {bytes_median:,.0f} bytes (MEMORY USAGE), max "
        f"{max(b for _, b in per_account):,}; used_memory grew {used / accounts:,.0f} bytes "
        f"per account; key suffixes {' '.join(suffixes)}; counter "
        f"TTL {ttl / 86400:.1f} days"
    )


# ---- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestRun:
    """One worker process ingesting `events`: its CPU, PostgreSQL's, wall, WAL and disk."""

    events: int
    wall_seconds: float
    worker_cpu: float
    postgres_cpu: float
    wal_bytes: int
    log_bytes: int
    daily_rows: int


def _measure_ingest(servers: Servers, home: Path, args: argparse.Namespace) -> list[IngestRun]:
    """`--rounds` ingest rounds of `--events` events each, and a batch message's size."""
    settings = servers.settings
    url = settings.database_url or ""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update(
        {
            "TIMO_HOME": str(home),
            "TIMO_DATABASE_URL": url,
            "TIMO_REDIS_URL": settings.redis_url or "",
            "TIMO_BROKER_URL": settings.effective_broker_url,
            "TIMO_KEY_PEPPER": settings.key_pepper,
            "PYTHONPATH": str(ROOT),
        }
    )
    command = ingest.solo_worker(
        str(Path(sys.executable).parent / "celery"), "workers.entry", EVENTS_QUEUE
    )
    print(
        f"\ningest: one worker process (--pool solo), {args.events:,} events a round in messages "
        f"of {BATCH_SIZE:,} (50 accounts, 100 keys, 3 routes, 5 statuses, today)"
    )
    print(
        f"{'round':<6}{'events/s':>9}{'worker CPU':>12}{'PG CPU':>8}{'WAL':>8}{'log':>8}"
        f"{'usage_daily':>13}"
    )
    print(f"{'':<6}{'wall':>9}{'us/event':>12}{'us/ev':>8}{'B/ev':>8}{'B/ev':>8}{'rows':>13}")
    runs = []
    for round_ in range(args.rounds):
        run = _ingest_round(servers, env, command, args.events)
        runs.append(run)
        print(
            f"{round_ + 1:<6}{run.events / run.wall_seconds:>9,.0f}"
            f"{run.worker_cpu / run.events * 1e6:>12.1f}{run.postgres_cpu / run.events * 1e6:>8.1f}"
            f"{run.wal_bytes / run.events:>8.0f}{run.log_bytes / run.events:>8.0f}"
            f"{run.daily_rows:>13,}",
            flush=True,
        )
    worker_us = _median(r.worker_cpu / r.events * 1e6 for r in runs)
    print(
        f"median: worker {worker_us:.1f} CPU us/event -> {1e6 / worker_us:,.0f} events/s per "
        f"worker core ({_median(r.events / r.wall_seconds for r in runs):,.0f} events/s by wall "
        f"clock here); PostgreSQL {_median(r.postgres_cpu / r.events * 1e6 for r in runs):.1f} "
        f"CPU us/event; WAL {_median(r.wal_bytes / r.events for r in runs):.0f} B/event; the "
        f"log on disk {_median(r.log_bytes / r.events for r in runs):.0f} B/event (partition + "
        "indexes)"
    )
    print(f"  rounds' worker CPU us/event: {_rounds(r.worker_cpu / r.events * 1e6 for r in runs)}")
    lines = ingest.event_lines(BATCH_SIZE)
    body = json.dumps([[lines], {}, {"callbacks": None, "errbacks": None}]).encode()
    packed, _ = compression.compress(body, "zstd")
    print(
        f"a message of {BATCH_SIZE:,} events: {len(body):,} B of JSON, {len(packed):,} B with "
        f"zstd (what the broker carries; the Redis transport adds base64: x4/3)"
    )
    return runs


def _ingest_round(
    servers: Servers, env: dict[str, str], command: list[str], count: int
) -> IngestRun:
    """An emptied log, a worker started and idle, `count` events sent; until all are in."""
    url = servers.settings.database_url or ""
    ingest.reset_log(url)
    ingest.purge_queues(servers.settings.effective_broker_url)
    start = datetime.now(UTC) - timedelta(milliseconds=7 * count)
    lines = ingest.event_lines(count, start)
    with psycopg.connect(url, autocommit=True) as conn:
        PartitionRegistry().ensure(conn, {month_start(start), month_start(datetime.now(UTC))})
        conn.execute("CHECKPOINT")
        wal_before = _one(conn, "SELECT pg_current_wal_lsn()::text")
        log_before = int(_one(conn, LOG_BYTES))
        worker = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_until_idle(worker.pid)
            cpu_before = hot_path.tree_cpu(worker.pid), servers.postgres_cpu()
            ingest.publish_batches(servers.settings.effective_broker_url, lines)
            deadline = time.monotonic() + 300
            # The broker's queue first (no PostgreSQL work), then the projection's total.
            while servers.broker_redis.llen(EVENTS_QUEUE) > 0 or _ingested(conn) < count:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"ingest worker stalled at {_ingested(conn):,} events")
                time.sleep(0.02)
            done = datetime.now(UTC)
            worker_cpu = hot_path.tree_cpu(worker.pid) - cpu_before[0]
            postgres_cpu = servers.postgres_cpu() - cpu_before[1]
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        first = _one(conn, "SELECT min(ingested_at) FROM events")
        wal = int(_one(conn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (wal_before,)))
        log_bytes = int(_one(conn, LOG_BYTES)) - log_before
        daily_rows = int(_one(conn, "SELECT count(*) FROM usage_daily"))
    return IngestRun(
        count, (done - first).total_seconds(), worker_cpu, postgres_cpu, wal, log_bytes, daily_rows
    )


def _ingested(conn: psycopg.Connection) -> int:
    """Events in the log, as the projection counts them."""
    # The projection's few hundred rows rather than the log's tens of thousands: what is counted
    # here is PostgreSQL's work too.
    return int(_one(conn, "SELECT coalesce(sum(calls), 0) FROM usage_daily"))


def _wait_until_idle(pid: int, timeout: float = 120) -> None:
    """Until the process (a worker starting) has used almost no CPU for half a second."""
    deadline = time.monotonic() + timeout
    time.sleep(1)
    last = hot_path.tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = hot_path.tree_cpu(pid)
        if now - last < 0.02:
            return
        last = now
    raise SystemExit("the ingest worker did not settle")


def _one(conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> object:
    """The one value a query returns."""
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


# ---- forecast -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastRun:
    """The nightly forecast of one group of accounts, per account."""

    cpu_seconds: float
    wall_seconds: float
    postgres_seconds: float


# The BLAS settings the forecast is measured under: one thread per process, as the gunicorn
# config sets it for web workers, and the library's default (a thread per CPU, spinning while it
# waits), which is what a Celery worker gets today.
BLAS = {"1 BLAS thread": "1", "BLAS default": None}


def _measure_forecast(
    servers: Servers, args: argparse.Namespace
) -> tuple[dict[tuple[str, int], list[ForecastRun]], float]:
    """Accounts with history, then each round's forecasts under each BLAS setting."""
    settings = servers.settings
    runtime = build_runtime(settings)
    try:
        ingest.reset_log(settings.database_url or "")
        groups: dict[int, list[uuid.UUID]] = {days: [] for days in FORECAST_HISTORIES}
        # (`load_history`'s progress bars are not wanted here.)
        with contextlib.redirect_stderr(io.StringIO()):
            _load_forecast_accounts(runtime, groups, args.forecast_accounts)
        first = datetime.now(UTC).date() - timedelta(days=max(FORECAST_HISTORIES) + 1)
        projection_rebuild.rebuild(runtime.database, first)
        with runtime.database.connection() as conn:
            daily_bytes = int(_one(conn, "SELECT pg_total_relation_size('usage_daily')"))
            daily_rows = int(_one(conn, "SELECT count(*) FROM usage_daily"))
    finally:
        runtime.close()
    print(
        f"\nforecast: run_all (default horizon and model, in batches), "
        f"{args.forecast_accounts} accounts "
        f"with 120 days of history and as many with 365 ({FORECAST_CALLS_PER_DAY} calls a day, "
        f"plan {FORECAST_PLAN}), in a fresh process per round and BLAS setting (after one "
        "untimed forecast), alternating"
    )
    print(
        f"{'round':<6}{'BLAS':<15}{'history':>8}{'CPU s/acct':>12}{'wall s/acct':>13}"
        f"{'PG CPU ms/acct':>16}"
    )
    runs: dict[tuple[str, int], list[ForecastRun]] = {
        (blas, days): [] for blas in BLAS for days in FORECAST_HISTORIES
    }
    now = datetime.now(UTC)
    for round_ in range(args.rounds):
        order = list(BLAS) if round_ % 2 == 0 else list(reversed(BLAS))
        for blas in order:
            days_order = FORECAST_HISTORIES if round_ % 2 == 0 else FORECAST_HISTORIES[::-1]
            measured = _forecast_in_child(servers, groups, days_order, now, BLAS[blas])
            for days in days_order:
                run = measured[days]
                runs[blas, days].append(run)
                print(
                    f"{round_ + 1:<6}{blas:<15}{days:>7}d{run.cpu_seconds:>12.3f}"
                    f"{run.wall_seconds:>13.3f}{run.postgres_seconds * 1000:>16.1f}",
                    flush=True,
                )
    for (blas, days), day_runs in runs.items():
        cpu = _median(r.cpu_seconds for r in day_runs)
        print(
            f"median {blas}, {days} days: {cpu:.3f} CPU s/account -> {3600 / cpu:,.0f} accounts "
            f"per core-hour; wall {_median(r.wall_seconds for r in day_runs):.3f} s; PostgreSQL "
            f"{_median(r.postgres_seconds for r in day_runs) * 1000:.1f} CPU ms/account "
            "(its clock ticks are 10 ms)"
        )
    with psycopg.connect(settings.database_url or "") as conn:
        stored = int(_one(conn, "SELECT avg(pg_column_size(f.*))::bigint FROM forecasts f"))
    print(
        f"usage_daily: {daily_bytes / daily_rows:.0f} B per row with its indexes "
        f"({daily_rows:,} rows of 60 (key, route, status) a day); a stored forecast: {stored:,} B "
        "(its row, the body compressed, without indexes)"
    )
    return runs, daily_bytes / daily_rows


def _load_forecast_accounts(
    runtime: Runtime, groups: dict[int, list[uuid.UUID]], count: int
) -> None:
    """`count` accounts for each history length, their events in the log."""
    for days in FORECAST_HISTORIES:
        for _ in range(count):
            account, issued = service.create_account(
                runtime, f"capacity-forecast-{uuid.uuid4().hex}@example.com", FORECAST_PLAN
            )
            keys = [issued.key.id]
            keys += [service.issue_key(runtime, account.id, f"key {i}").key.id for i in (2, 3)]
            analytics.load_history(runtime, account.id, keys, FORECAST_CALLS_PER_DAY * days, days)
            groups[days].append(account.id)


def _forecast_in_child(
    servers: Servers,
    groups: dict[int, list[uuid.UUID]],
    order: Iterable[int],
    now: datetime,
    blas_threads: str | None,
) -> dict[int, ForecastRun]:
    """Each group's forecasts in a new process (BLAS reads its thread count at import)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    }
    if blas_threads is not None:
        env.update({"OPENBLAS_NUM_THREADS": blas_threads, "OMP_NUM_THREADS": blas_threads})
    job = {
        "database_url": servers.settings.database_url,
        "postmaster": servers.postmaster_pid,
        "now": now.isoformat(),
        "groups": [[days, [str(a) for a in groups[days]]] for days in order],
    }
    child = subprocess.run(
        [sys.executable, str(Path(__file__)), "--forecast-child"],
        input=json.dumps(job),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise SystemExit(f"forecast child failed:\n{child.stderr}")
    measured = json.loads(child.stdout.splitlines()[-1])
    return {int(days): ForecastRun(*figures) for days, figures in measured.items()}


def _forecast_child() -> None:
    """In the child: the job from stdin; one JSON line of (CPU, wall, PostgreSQL) per group."""
    job = json.loads(sys.stdin.read())
    database = Database(job["database_url"])
    now = datetime.fromisoformat(job["now"])
    groups = [(days, [uuid.UUID(a) for a in accounts]) for days, accounts in job["groups"]]
    try:
        forecasts.run_nightly(database, groups[0][1][0], now)  # imports, caches: not timed
        measured = {}
        for days, accounts in groups:
            cpu, wall = time.process_time(), time.perf_counter()
            postgres = postgres_cpu(job["postmaster"])
            # As a chunk task does: batches of `forecasts.BATCH_ACCOUNTS`.
            forecasts.run_all(database, accounts, now)
            measured[days] = (
                (time.process_time() - cpu) / len(accounts),
                (time.perf_counter() - wall) / len(accounts),
                (postgres_cpu(job["postmaster"]) - postgres) / len(accounts),
            )
    finally:
        database.close()
    print(json.dumps(measured))


# ---- summary --------------------------------------------------------------------------------


def _print_derived(
    web: dict[str, list[WebRun]],
    saturated_us: float | None,
    ingested: list[IngestRun],
    forecast: tuple[dict[tuple[str, int], list[ForecastRun]], float],
) -> None:
    """The per-core figures docs/capacity.md starts from, each beside its source."""
    postgres_per_event = _median(r.postgres_cpu / r.events for r in ingested) * 1e6
    print("\nper-core figures (the model's inputs):")
    bare = web.pop("bare Flask")
    bare_us = _median(r.web_us for r in bare)
    print(f"  bare Flask (the VM's yardstick): {bare_us:.0f} us/req")
    for kind, runs in web.items():
        web_us = _median(r.web_us for r in runs)
        ratio = _median(r.web_us / b.web_us for r, b in zip(runs, bare, strict=True))
        redis_us = _median(r.redis_us for r in runs)
        # PostgreSQL's CPU during the web run, less what ingesting the events logged meanwhile
        # costs it (at the ingest part's rate): the web tier's own (ledger, receipts, auth).
        own = _median(r.postgres_us - r.logged * postgres_per_event for r in runs)
        print(
            f"  web, {kind}: {1e6 / web_us:,.0f} req/s per web worker core ({web_us:.0f} us, "
            f"{ratio:.2f}x bare Flask); {1e6 / redis_us:,.0f} req/s per Redis core "
            f"({redis_us:.1f} us); PostgreSQL ~{own:.0f} us/req for the web tier (ledger, "
            "receipts, auth)"
        )
    if saturated_us is not None:
        print(
            f"  Redis, admissions at saturation: {1e6 / saturated_us:,.0f}/s per Redis core "
            f"({saturated_us:.1f} us)"
        )
    worker_us = _median(r.worker_cpu / r.events for r in ingested) * 1e6
    print(
        f"  ingest: {1e6 / worker_us:,.0f} events/s per worker process-core ({worker_us:.1f} us"
        f"/event); {1e6 / postgres_per_event:,.0f} events/s per PostgreSQL core "
        f"({postgres_per_event:.1f} us/event)"
    )
    runs, _ = forecast
    for (blas, days), day_runs in runs.items():
        cpu = _median(r.cpu_seconds for r in day_runs)
        print(
            f"  forecast, {blas}, {days} days: {cpu:.3f} CPU s/account ({1e6 * cpu / 3600:,.0f} "
            "core-hours per million accounts)"
        )


def _median(values: Iterable[float]) -> float:
    """The median, as a float."""
    return float(statistics.median(list(values)))


def _rounds(values: Iterable[float], form: str = ".0f") -> str:
    """Each round's figure, in order."""
    return " ".join(format(v, form) for v in values)


if __name__ == "__main__":
    main()
