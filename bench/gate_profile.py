"""Where the metered request's microseconds go: the gate's parts, each switched off in turn.

Builds the app as production runs it (`TIMO_ENV=production`, JSON access log at INFO, metrics
in multiprocess mode, event publishing on) and calls it in-process through WSGI, without a
server, so only the application's own CPU is measured (the request thread's, by
`time.thread_time`). In blocks of `--calls` calls it alternates: the full gate; the gate with one
part replaced by a no-op (the access log line, the usage event, the metrics, the quota admission
after its first answer, the authentication after its first answer); all of those off; and the
bare Flask endpoint of `bench/apps.py`. Each figure is the median over `--rounds` blocks, so
what a part costs is read as the difference from the full gate. With `--cprofile`, it also prints
the functions where the full gate spends its time.

Run: `.venv/bin/python bench/gate_profile.py` (uses TIMO_DATABASE_URL / TIMO_REDIS_URL when set,
embedded servers otherwise). docs/hot-path.md keeps a run's output.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEPPER = "bench-pepper-not-a-secret-0123456789abcdef"
SECRET_KEY = "bench-secret-key-not-a-secret-0123456789"
PARTS = ("access log", "usage event", "metrics", "quota admission", "authentication")


def main() -> None:
    """Measure each variant, alternating, and print the medians."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="timo-gate-profile-"))
    os.environ.setdefault("TIMO_KEY_PEPPER", PEPPER)
    os.environ.setdefault("TIMO_SECRET_KEY", SECRET_KEY)
    os.environ.update(TIMO_HOME=str(home), TIMO_LOG_LEVEL="INFO")
    from timo_hub.platform import prometheus

    prometheus.use_multiprocess_directory(home, "web")
    from timo_hub.platform.embedded import release_services, resolve_services
    from timo_hub.platform.settings import Settings

    settings = resolve_services(Settings.from_env(home=home))
    # Production refuses embedded servers unless named: name the ones just resolved.
    os.environ.update(
        TIMO_ENV="production",
        TIMO_DATABASE_URL=settings.database_url or "",
        TIMO_REDIS_URL=settings.redis_url or "",
        TIMO_BROKER_URL=settings.effective_broker_url,
    )
    log = open(home / "access.log", "w")  # noqa: SIM115 - the access log's file, for the run
    real_stderr, sys.stderr = sys.stderr, log
    try:
        _measure(settings, args)
    finally:
        logging.shutdown()  # writes the access lines still held, while their file is open
        sys.stderr = real_stderr
        log.close()
        release_services(home)


def _measure(settings: Any, args: argparse.Namespace) -> None:
    from api import create_app
    from bench.apps import bare_app
    from timo_hub.accounts import service
    from timo_hub.platform import migrate
    from timo_hub.platform.runtime import build_runtime

    migrate.migrate(settings.database_url or "")
    runtime = build_runtime(settings)
    with runtime.database.connection() as conn:
        conn.execute(
            "INSERT INTO plans (name, display_name, monthly_limit, sort_order, burst_limit) "
            "VALUES ('bench', 'Bench (huge limit)', 1000000000000, 99, 1000000000000) "
            "ON CONFLICT (name) DO UPDATE SET burst_limit = EXCLUDED.burst_limit"
        )
    _, issued = service.create_account(runtime, f"profile-{time.time_ns()}@example.com", "bench")
    runtime.close()
    app, bare = create_app(), bare_app()
    switches = _Switches()
    variants: dict[str, tuple[Any, str, Iterable[str]]] = {
        "full gate": (app, "/api/v1/account/quota", ()),
        **{f"no {part}": (app, "/api/v1/account/quota", (part,)) for part in PARTS},
        "none of those": (app, "/api/v1/account/quota", PARTS),
        "bare Flask": (bare, "/bare", ()),
    }
    auth = f"Bearer {issued.secret}"
    for served, path, off in variants.values():  # warm every path up
        switches.set(off)
        _calls(served, path, auth, 500)
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(args.rounds):
        # A fresh order each round: whichever variant ran first in every round was measured
        # high (its blocks paid for what the one before left behind), inflating every "saves".
        random.shuffle(order)
        for name in order:
            served, path, off = variants[name]
            switches.set(off)
            started = time.thread_time()
            _calls(served, path, auth, args.calls)
            cpu[name].append((time.thread_time() - started) / args.calls * 1e6)
    switches.set(())
    full = statistics.median(cpu["full gate"])
    print(f"in-process CPU per call (request thread), median of {args.rounds} blocks")
    print(f"{'variant':<22}{'us/call':>9}{'saves':>8}   blocks")
    for name, values in cpu.items():
        median = statistics.median(values)
        blocks = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:<22}{median:>9.1f}{full - median:>8.1f}   {blocks}")
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(_calls, app, "/api/v1/account/quota", auth, args.calls)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


class _Switches:
    """Replaces parts of the gate with no-ops, and puts them back."""

    def __init__(self) -> None:
        import api.http_metrics as http_metrics
        import api.metering as metering
        from api.authentication import Authenticator
        from timo_hub.quota.enforcer import QuotaEnforcer

        self._metering, self._metrics = metering, http_metrics
        self._enforcer, self._authenticator = QuotaEnforcer, Authenticator
        self._real = {
            "usage event": metering.record_call,
            "metrics": http_metrics.count,
            "quota admission": QuotaEnforcer.admit,
            "authentication": Authenticator.authenticate,
        }

    def set(self, off: Iterable[str]) -> None:
        off = set(off)
        access = logging.getLogger("api.access")
        access.setLevel(logging.WARNING if "access log" in off else logging.NOTSET)
        self._metering.record_call = _nothing if "usage event" in off else self._real["usage event"]
        self._metrics.count = _nothing if "metrics" in off else self._real["metrics"]
        admit, authenticate = self._real["quota admission"], self._real["authentication"]
        # The moment of each call differs; the first answer for the caller stands for all.
        self._enforcer.admit = (
            _first_answer(admit, drop_time=True) if "quota admission" in off else admit
        )
        self._authenticator.authenticate = (
            _first_answer(authenticate) if "authentication" in off else authenticate
        )


def _nothing(*args: object, **kwargs: object) -> None:
    return None


def _first_answer(method: Callable[..., Any], *, drop_time: bool = False) -> Callable[..., Any]:
    """`method`, answering every later call with its first answer (for the same arguments; with
    `drop_time`, the call is `(principal, moment)` and only the principal's account counts)."""
    answers: dict[Any, Any] = {}

    def replay(self: object, *args: object, **kwargs: object) -> Any:
        compared = (getattr(args[0], "account_id", None),) if drop_time else args
        key = (compared, tuple(sorted(kwargs.items())))
        if key not in answers:
            answers[key] = method(self, *args, **kwargs)
        return answers[key]

    return replay


def _calls(app: Any, path: str, auth: str, count: int) -> None:
    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"{path}: {status}")

    for _ in range(count):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": auth,
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        body = app(environ, start_response)
        b"".join(body)
        close = getattr(body, "close", None)
        if close is not None:
            close()


if __name__ == "__main__":
    main()
