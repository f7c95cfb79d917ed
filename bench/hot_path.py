"""What authentication and quota admission cost a request, against two baselines, in one run.

Serves, one after another and with the same gunicorn settings:
  (a) a bare Flask JSON endpoint (no auth, no metering),
  (b) that endpoint behind Flask-Limiter with Redis storage,
  (c) `GET /api/v1/account/quota`: bearer auth + atomic admission + durable ledger,
drives each with wrk for a fixed time, and prints requests/s, p50 and p99 latency, and the ratios
c/a and c/b. Targets: c/a >= 0.6, c/b >= 1.0, p99(c) - p99(a) <= 2 ms.

`--before PATH` compares (c) with (c) served from another checkout instead (a `git worktree` of
the commit before a change): the two alternate, in both orders, for `--rounds` rounds, and the
medians are printed with their ratio, so a change's cost on the request path is read off one run.

Run: `make bench-hot-path` (installs wrk and Flask-Limiter if needed). Uses TIMO_DATABASE_URL /
TIMO_REDIS_URL when set, embedded servers in a temporary TIMO_HOME otherwise.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timo_hub.accounts import service  # noqa: E402
from timo_hub.platform import migrate  # noqa: E402
from timo_hub.platform.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.platform.runtime import build_runtime  # noqa: E402
from timo_hub.platform.settings import Settings  # noqa: E402


@dataclass(frozen=True)
class Result:
    """One wrk run."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    cpu_us: float  # server CPU per request (gunicorn master and workers), robust to noise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _serve_and_measure(  # type: ignore[no-untyped-def]
    name: str, app: str, path: str, env: dict[str, str], worker_class: str, args, root: Path = ROOT
) -> Result:
    port = _free_port()
    gunicorn = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(args.threads),
        "--no-control-socket",
        "--log-level",
        "warning",
        "--pythonpath",
        str(root),
        app,
    ]
    # As before the app had its own access log: no log line per request for any of the three.
    server = subprocess.Popen(gunicorn, env={**env, "TIMO_LOG_LEVEL": "WARNING"}, cwd=root)
    url = f"http://127.0.0.1:{port}{path}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(url, headers={"Authorization": env["BENCH_AUTH"]})
                with urllib.request.urlopen(request, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: server did not come up") from None
                time.sleep(0.1)
        wrk = ["wrk", "-t", "1", "--latency", "-H", f"Authorization: {env['BENCH_AUTH']}"]
        connections = ["-c", str(args.connections)]
        subprocess.run([*wrk, *connections, "-d", "2s", url], capture_output=True, check=True)
        # Throughput: saturate with many connections. Latency: one connection, so the figures
        # are service time rather than queueing behind the other connections.
        cpu_before = _tree_cpu(server.pid)
        loaded = _wrk([*wrk, *connections, "-d", f"{args.seconds}s", url])
        cpu_used = _tree_cpu(server.pid) - cpu_before
        single = _wrk([*wrk, "-c", "1", "-d", f"{max(args.seconds // 2, 2)}s", url])
    finally:
        server.terminate()
        server.wait(timeout=30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", loaded).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"\s50%\s+(\S+)", single).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"\s99%\s+(\S+)", single).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", loaded + single)
    total = int(re.search(r"(\d+) requests in", loaded).group(1))  # type: ignore[union-attr]
    cpu_us = cpu_used / total * 1e6
    return Result(name, rps, p50, p99, int(non_2xx.group(1)) if non_2xx else 0, cpu_us)


def _tree_cpu(pid: int) -> float:
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
    """Measure the three servers and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--worker-class",
        action="append",
        choices=["sync", "gthread"],
        help="repeatable; default: sync, then gthread",
    )
    parser.add_argument("--threads", type=int, default=4)
    # gthread keeps connections alive and each sticks to the worker that accepted it: with few
    # connections one worker may hold all of them, halving whichever server is measured.
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--before", type=Path, help="a checkout to compare (c) with, alternating, instead of a/b"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --before comparison")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench-hot-path` installs it (apt-get)")

    home = tempfile.mkdtemp(prefix="timo-bench-")
    try:
        _run(home, args)
    finally:
        # No worker runs here: drop the events the metered server published, then stop the
        # embedded servers before their data directory goes away.
        _purge_events(home)
        release_services(Path(home))
        shutil.rmtree(home, ignore_errors=True)


def _purge_events(home: str) -> None:
    from events.publisher import producer_app

    settings = resolve_services(Settings.from_env(home=Path(home)))
    app = producer_app(settings.effective_broker_url)
    with app.connection() as conn:
        app.control.purge(connection=conn)


def _run(home: str, args) -> None:  # type: ignore[no-untyped-def]
    """Create a benchmark account, then measure each server under each worker class."""
    settings = resolve_services(Settings.from_env(home=Path(home)))
    migrate.migrate(settings.database_url or "")
    runtime = build_runtime(settings)
    _, issued = service.create_account(runtime, f"bench-{time.time_ns()}@example.com", "enterprise")
    runtime.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update(
        {
            "TIMO_HOME": home,
            "TIMO_DATABASE_URL": settings.database_url or "",
            "TIMO_REDIS_URL": settings.redis_url or "",
            "TIMO_BROKER_URL": settings.effective_broker_url,
            "TIMO_KEY_PEPPER": settings.key_pepper,
            "BENCH_REDIS_URL": settings.redis_url or "",
            "BENCH_AUTH": f"Bearer {issued.secret}",
        }
    )
    for worker_class in args.worker_class or ["sync", "gthread"]:
        if args.before is not None:
            _compare_with_before(env, worker_class, args)
            continue
        results = [
            _serve_and_measure(name, app, path, env, worker_class, args)
            for name, app, path in (
                ("a bare Flask", "bench.apps:bare_app()", "/bare"),
                ("b Flask-Limiter", "bench.apps:limited_app()", "/bare"),
                ("c timo quota", "api:create_app()", "/api/v1/account/quota"),
            )
        ]
        _report(worker_class, results, args)


def _report(worker_class: str, results: list[Result], args) -> None:  # type: ignore[no-untyped-def]
    threads = f" x{args.threads} threads" if worker_class == "gthread" else ""
    print(
        f"\ngunicorn {args.workers} workers, {worker_class}{threads}; "
        f"wrk 1 thread, {args.connections} connections, {args.seconds}s each"
    )
    print(
        f"{'server':<18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'non-2xx':>9}"
        "   (latency at 1 connection)"
    )
    for r in results:
        print(
            f"{r.name:<18}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.cpu_us:>12.0f}"
            f"{r.non_2xx:>9}"
        )
    a, b, c = results
    # Throughput swings with whatever else the shared machine runs; server CPU per request is
    # the steadier measure of what each stack costs, so both ratios are printed.
    print(
        f"c/a throughput {c.rps / a.rps:.2f}, by server CPU per request {a.cpu_us / c.cpu_us:.2f}"
        "  (target >= 0.60)"
    )
    print(
        f"c/b throughput {c.rps / b.rps:.2f}, by server CPU per request {b.cpu_us / c.cpu_us:.2f}"
        "  (target >= 1.00)"
    )
    added = c.p99_ms - a.p99_ms
    print(f"p99 added by auth + admission: {added:+.2f} ms  (target <= 2 ms)", flush=True)


def _compare_with_before(env: dict[str, str], worker_class: str, args) -> None:  # type: ignore[no-untyped-def]
    """(c) from `args.before` and from this checkout, alternating; medians and their ratio."""
    contenders = {"before": args.before.resolve(), "after": ROOT}
    runs: dict[str, list[Result]] = {name: [] for name in contenders}
    for round_ in range(args.rounds):
        order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        for name in order:
            runs[name].append(
                _serve_and_measure(
                    name,
                    "api:create_app()",
                    "/api/v1/account/quota",
                    env,
                    worker_class,
                    args,
                    contenders[name],
                )
            )
    threads = f" x{args.threads} threads" if worker_class == "gthread" else ""
    print(
        f"\ngunicorn {args.workers} workers, {worker_class}{threads}; (c) before vs after, "
        f"{args.rounds} alternating rounds of {args.seconds}s; medians"
    )
    print(
        f"{'checkout':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}   rounds' CPU"
    )
    medians = {}
    for name, results in runs.items():
        medians[name] = Result(
            name,
            statistics.median(r.rps for r in results),
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            sum(r.non_2xx for r in results),
            statistics.median(r.cpu_us for r in results),
        )
        m = medians[name]
        rounds = " ".join(f"{r.cpu_us:.0f}" for r in results)
        print(
            f"{name:<10}{m.rps:>10.0f}{m.p50_ms:>9.2f}{m.p99_ms:>9.2f}{m.cpu_us:>12.0f}   {rounds}"
        )
    before, after = medians["before"], medians["after"]
    print(
        f"after/before: CPU per request {after.cpu_us / before.cpu_us:.2f}, throughput "
        f"{after.rps / before.rps:.2f}, p99 {after.p99_ms - before.p99_ms:+.2f} ms",
        flush=True,
    )


if __name__ == "__main__":
    main()
