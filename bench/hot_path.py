"""What metering costs a request, against two baselines, measured side by side in one run.

Serves, with the same gunicorn settings:
  (a) a bare Flask JSON endpoint (no auth, no metering),
  (b) that endpoint behind Flask-Limiter with Redis storage,
  (c) `GET /api/v1/account/quota`: bearer auth, atomic admission, durable ledger, the usage event
      spooled and shipped, the JSON access log line and the metrics, served as in production
      (`TIMO_ENV=production`, INFO logs, metrics on, gunicorn with the product's config, and a
      Celery worker ingesting the events so that the web process's delivery checks are real);
and alternates them, a b c then c b a, for `--rounds` rounds. Each run drives the server with wrk
at `--connections` connections (throughput, server CPU per request and p99 under load), then at 1
connection (p99 as service time). Server CPU counts the gunicorn master, its workers and all their
threads (the event shipper, the ledger writer): everything a web host runs. Redis, PostgreSQL and
the Celery worker are not counted for anyone (b uses Redis too). The Celery worker runs at the
lowest CPU priority (`nice 19`): in production it runs on worker hosts, not beside the web server,
and here it only has to be there for delivery confirmation to be real, not to take the web
server's CPU time on a 2-core machine (it still gets all the CPU the servers leave idle).

Printed: each round, then the median over rounds of each ratio (computed per round, so a noisy
moment of the shared machine moves one round, not the verdict). Targets: c/a >= 0.7 and c/b >= 1.5
by server CPU per request; p99 added by the gate <= 2 ms at 1 connection and <= 5 ms at 32.

`--worker-class` picks gunicorn's worker: `buffering` (the product's default, which reads each
request whole before serving it: timo_hub/serving/buffering_worker.py), `sync` or `gthread`.
`--before PATH` compares (c) with (c) served from another checkout instead (a `git worktree` of
the commit before a change); `--against-worker-class sync` compares (c) under each worker class
with (c) under gunicorn's sync worker. The two alternate in the same way and the medians are
printed.

Run: `make bench-hot-path` (installs wrk and Flask-Limiter if needed). Uses TIMO_DATABASE_URL /
TIMO_REDIS_URL / TIMO_BROKER_URL when set, embedded servers in a temporary TIMO_HOME otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timo_hub.accounts import service  # noqa: E402
from timo_hub.platform import migrate  # noqa: E402
from timo_hub.platform.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.platform.runtime import build_runtime  # noqa: E402
from timo_hub.platform.settings import Settings  # noqa: E402

BENCH_PEPPER = "bench-pepper-not-a-secret-0123456789abcdef"
BENCH_SECRET_KEY = "bench-secret-key-not-a-secret-0123456789"
# A plan no round can exhaust, so every call of (c) takes the limited-plan admission path (an
# unlimited plan would be no cheaper: the counter is counted either way), with a burst window as
# large (both windows checked and counted on every admission, none ever refusing).
BENCH_PLAN = ("bench", "Bench (huge limit)", 10**12, 10**12)
WORKER_CLASSES = {
    "buffering": "timo_hub.serving.buffering_worker.BufferingWorker",
    "sync": "sync",
    "gthread": "gthread",
}
SERVERS = {
    "a": ("a bare Flask", "bench.apps:bare_app()", "/bare"),
    "b": ("b Flask-Limiter", "bench.apps:limited_app()", "/bare"),
    "c": ("c timo quota", "api:create_app()", "/api/v1/account/quota"),
}


@dataclass(frozen=True)
class Result:
    """One server driven by wrk: under load, then at one connection."""

    name: str
    rps: float
    p99_loaded_ms: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    cpu_us: float  # server CPU per request under load (gunicorn master, workers, threads)
    requests: int = 0  # requests served under load
    # Each meter's change over the loaded run (what `serve_and_measure`'s `meters` read).
    meters: dict[str, float] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def serve_and_measure(  # type: ignore[no-untyped-def]
    key: str,
    env: dict[str, str],
    worker_class: str,
    args,
    root: Path = ROOT,
    *,
    wrk_script: Path | None = None,
    warmup_seconds: int = 2,
    meters: Mapping[str, Callable[[], float]] | None = None,
) -> Result:
    """Serve `key` under gunicorn and drive it with wrk (`wrk_script`: a Lua script of wrk's,
    say one choosing each request's key); `meters` (cumulative readings, e.g. another server's
    CPU seconds) are read just outside the loaded run, the server's CPU just inside."""
    meters = meters or {}
    name, app, path = SERVERS[key]
    port = _free_port()
    gunicorn = [str(Path(sys.executable).parent / "gunicorn")]
    if key == "c":
        # As the Procfile runs it: metrics directory, analytics preloaded in the master.
        gunicorn += ["--config", "python:timo_hub.gunicorn_config"]
    gunicorn += [
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        WORKER_CLASSES[worker_class],
        # gunicorn turns a sync worker with threads into gthread: sync means one thread.
        "--threads",
        str(args.threads if worker_class == "gthread" else 1),
        "--no-control-socket",
        "--log-level",
        "warning",
        "--pythonpath",
        str(root),
        app,
    ]
    home = Path(env["TIMO_HOME"])
    # The access log goes to a file, as a process manager would keep it (a pipe nobody reads
    # would block the workers once full).
    with open(home / f"access-{key}.log", "a") as log:
        server = subprocess.Popen(gunicorn, env=env, cwd=root, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}{path}"
        try:
            _wait_until_up(name, url, env)
            wrk = ["wrk", "-t", "1", "--latency", "-H", f"Authorization: {env['BENCH_AUTH']}"]
            if wrk_script is not None:
                wrk += ["-s", str(wrk_script)]
            connections = ["-c", str(args.connections)]
            warmup = [*wrk, *connections, "-d", f"{warmup_seconds}s", url]
            subprocess.run(warmup, capture_output=True, check=True)
            before = {meter: read() for meter, read in meters.items()}
            cpu_before = tree_cpu(server.pid)
            loaded = _wrk([*wrk, *connections, "-d", f"{args.seconds}s", url])
            cpu_used = tree_cpu(server.pid) - cpu_before
            after = {meter: meters[meter]() for meter in reversed(meters)}
            # One connection: the latency is service time, not queueing behind 31 others.
            single = _wrk([*wrk, "-c", "1", "-d", f"{max(args.seconds // 2, 2)}s", url])
        finally:
            server.terminate()
            server.wait(timeout=30)
    total = int(re.search(r"(\d+) requests in", loaded).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", loaded + single)
    return Result(
        name,
        float(re.search(r"Requests/sec:\s+([\d.]+)", loaded).group(1)),  # type: ignore[union-attr]
        _percentile(loaded, 99),
        _percentile(single, 50),
        _percentile(single, 99),
        int(non_2xx.group(1)) if non_2xx else 0,
        cpu_used / total * 1e6,
        total,
        {meter: after[meter] - before[meter] for meter in meters},
    )


def _percentile(output: str, percent: int) -> float:
    return _to_ms(re.search(rf"\s{percent}%\s+(\S+)", output).group(1))  # type: ignore[union-attr]


def _wait_until_up(name: str, url: str, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(url, headers={"Authorization": env["BENCH_AUTH"]})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: server did not come up") from None
            time.sleep(0.1)


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its children."""
    import psutil

    parent = psutil.Process(pid)
    total = 0.0
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _wrk(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def main() -> None:
    """Measure the servers, alternating, and print the comparison."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="of load per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (>= 3)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--worker-class",
        action="append",
        choices=list(WORKER_CLASSES),
        help="repeatable; default: buffering (the product's), then gthread",
    )
    parser.add_argument("--threads", type=int, default=4)
    # gthread keeps connections alive and each sticks to the worker that accepted it: with few
    # connections one worker may hold all of them, halving whichever server is measured.
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--before", type=Path, help="a checkout to compare (c) with, alternating, instead of a/b"
    )
    parser.add_argument(
        "--against-worker-class",
        choices=list(WORKER_CLASSES),
        help="a worker class to compare (c) with, alternating, instead of a/b",
    )
    parser.add_argument(
        "--server",
        choices=list(SERVERS),
        default="c",
        help="the server --before and --against-worker-class measure (a: the worker's own cost)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench-hot-path` installs it (apt-get)")

    home = tempfile.mkdtemp(prefix="timo-bench-")
    try:
        _run(home, args)
    finally:
        release_services(Path(home))
        shutil.rmtree(home, ignore_errors=True)


def _run(home: str, args) -> None:  # type: ignore[no-untyped-def]
    """Create a benchmark account, then measure each server under each worker class."""
    # Production refuses the development pepper; the key must be hashed under the servers' one.
    os.environ.setdefault("TIMO_KEY_PEPPER", BENCH_PEPPER)
    env = prepare_servers(resolve_services(Settings.from_env(home=Path(home))))
    with celery_worker(env):
        for worker_class in args.worker_class or ["buffering", "gthread"]:
            if args.before is not None:
                contenders = {"before": (args.before.resolve(), worker_class)}
                _compare_with_before(env, contenders | {"after": (ROOT, worker_class)}, args)
            elif args.against_worker_class is not None:
                contenders = {"before": (ROOT, args.against_worker_class)}
                _compare_with_before(env, contenders | {"after": (ROOT, worker_class)}, args)
            else:
                _compare_servers(env, worker_class, args)


def prepare_servers(settings: Settings) -> dict[str, str]:
    """Migrate, create the bench plan and an account on it; return the servers' environment
    (production settings naming `settings`'s services, the account's key in BENCH_AUTH)."""
    migrate.migrate(settings.database_url or "")
    runtime = build_runtime(settings)
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO plans (name, display_name, monthly_limit, sort_order, burst_limit) "
            "VALUES (%s, %s, %s, 99, %s) "
            "ON CONFLICT (name) DO UPDATE SET burst_limit = EXCLUDED.burst_limit",
            BENCH_PLAN,
        )
    _, issued = service.create_account(
        runtime, f"bench-{time.time_ns()}@example.com", BENCH_PLAN[0]
    )
    runtime.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update(
        {
            "TIMO_HOME": str(settings.home),
            "TIMO_ENV": "production",
            "TIMO_LOG_LEVEL": "INFO",
            "TIMO_METRICS_TOKEN": "bench-metrics-token",
            "TIMO_DATABASE_URL": settings.database_url or "",
            "TIMO_REDIS_URL": settings.redis_url or "",
            "TIMO_BROKER_URL": settings.effective_broker_url,
            "TIMO_KEY_PEPPER": settings.key_pepper,
            "TIMO_SECRET_KEY": BENCH_SECRET_KEY,
            "BENCH_REDIS_URL": settings.redis_url or "",
            "BENCH_AUTH": f"Bearer {issued.secret}",
        }
    )
    return env


@contextmanager
def celery_worker(env: dict[str, str]) -> Iterator[None]:
    """A Celery worker ingesting the events (c) publishes, for the whole run."""
    celery = str(Path(sys.executable).parent / "celery")
    command = ["nice", "-n", "19", celery, "-A", "workers.entry", "worker", "--loglevel", "WARNING"]
    command += ["--concurrency", "1", "--without-mingle", "--without-gossip", "-Q", "events"]
    with open(Path(env["TIMO_HOME"]) / "worker.log", "a") as log:
        worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def _compare_servers(env: dict[str, str], worker_class: str, args) -> None:  # type: ignore[no-untyped-def]
    """a b c, then c b a, ... for `args.rounds` rounds; each round's ratios, and their medians."""
    threads = f" x{args.threads} threads" if worker_class == "gthread" else ""
    print(
        f"\ngunicorn {args.workers} workers, {worker_class}{threads}; wrk 1 thread, "
        f"{args.connections} connections then 1, {args.seconds}s each; {args.rounds} rounds "
        "alternating a b c / c b a",
        flush=True,
    )
    loaded = f"p99 ms @{args.connections}"
    print(
        f"{'round':<6}{'server':<18}{'req/s':>9}{'CPU us/req':>12}{loaded:>12}"
        f"{'p50 ms @1':>11}{'p99 ms @1':>11}{'non-2xx':>9}"
    )
    ratios: dict[str, list[float]] = {"c/a": [], "c/b": [], "p99+@1": [], "p99+@n": []}
    for round_ in range(args.rounds):
        order = "abc" if round_ % 2 == 0 else "cba"
        results = {key: serve_and_measure(key, env, worker_class, args) for key in order}
        for key in "abc":
            r = results[key]
            print(
                f"{round_ + 1:<6}{r.name:<18}{r.rps:>9.0f}{r.cpu_us:>12.0f}{r.p99_loaded_ms:>12.2f}"
                f"{r.p50_ms:>11.2f}{r.p99_ms:>11.2f}{r.non_2xx:>9}",
                flush=True,
            )
        a, b, c = results["a"], results["b"], results["c"]
        ratios["c/a"].append(a.cpu_us / c.cpu_us)
        ratios["c/b"].append(b.cpu_us / c.cpu_us)
        ratios["p99+@1"].append(c.p99_ms - a.p99_ms)
        ratios["p99+@n"].append(c.p99_loaded_ms - a.p99_loaded_ms)
    print(f"median over {args.rounds} rounds ({worker_class}):")
    lines = (
        ("c/a", "c/a by server CPU per request", "{:.2f}", "(>= 0.70)"),
        ("c/b", "c/b by server CPU per request", "{:.2f}", "(>= 1.50)"),
        ("p99+@1", "p99 added at 1 connection", "{:+.2f} ms", "(<= 2 ms)"),
        ("p99+@n", f"p99 added at {args.connections} connections", "{:+.2f} ms", "(<= 5 ms)"),
    )
    for key, label, form, target in lines:
        shown = form.format(statistics.median(ratios[key]))
        rounds = " ".join(f"{v:.2f}" for v in ratios[key])
        print(f"  {label:<32}{shown:>10}  target {target}   rounds: {rounds}", flush=True)


def _compare_with_before(  # type: ignore[no-untyped-def]
    env: dict[str, str], contenders: dict[str, tuple[Path, str]], args
) -> None:
    """(c) as `before` and as `after` (checkout, worker class), alternating; medians, ratio."""
    runs: dict[str, list[Result]] = {name: [] for name in contenders}
    for round_ in range(args.rounds):
        order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        for name in order:
            root, worker_class = contenders[name]
            runs[name].append(serve_and_measure(args.server, env, worker_class, args, root))
    described = "; ".join(
        f"{name} {root.name} {worker_class}" for name, (root, worker_class) in contenders.items()
    )
    print(
        f"\ngunicorn {args.workers} workers; ({args.server}) before vs after ({described}), "
        f"{args.rounds} alternating rounds of {args.seconds}s; medians"
    )
    print(
        f"{'checkout':<10}{'req/s':>10}{'p99 ms @32':>12}{'p99 ms @1':>11}{'CPU us/req':>12}"
        "   rounds' CPU"
    )
    medians = {}
    for name, results in runs.items():
        medians[name] = (
            statistics.median(r.rps for r in results),
            statistics.median(r.p99_ms for r in results),
            statistics.median(r.cpu_us for r in results),
            statistics.median(r.p99_loaded_ms for r in results),
        )
        rps, p99, cpu, p99_loaded = medians[name]
        rounds = " ".join(f"{r.cpu_us:.0f}" for r in results)
        print(f"{name:<10}{rps:>10.0f}{p99_loaded:>12.2f}{p99:>11.2f}{cpu:>12.0f}   {rounds}")
    before, after = medians["before"], medians["after"]
    print(
        f"after/before: CPU per request {after[2] / before[2]:.2f}, throughput "
        f"{after[0] / before[0]:.2f}, p99 {after[3] - before[3]:+.2f} ms @32, "
        f"{after[1] - before[1]:+.2f} ms @1",
        flush=True,
    )


if __name__ == "__main__":
    main()
