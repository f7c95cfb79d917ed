"""Publishing at a sustained rate: one web process's spool, shipper and delivery checks.

Plays one web process: a thread appends events to an `EventPublisher`'s spool at `--rate` a
second (as the gate does, one line per call) for `--seconds`, while its shipper thread ships them
to the broker and confirms them by their batch receipts; one Celery worker process ingests. Every
second it samples the spool lag (bytes not yet shipped, as seconds of traffic) and the unconfirmed
backlog (events shipped but without a receipt). Afterwards it waits until everything is
confirmed and counts the run's events in `events` and in `usage_daily`.

Targets: the offered rate held (>= 10,000 events/s), spool lag and unconfirmed backlog bounded
(they stop growing), nothing lost and nothing counted twice. Also printed: the CPU the shipper
thread spent per event.

Run: `make bench-publishing` (or `.venv/bin/python bench/publishing.py [--rate N] [--seconds S]`).
Uses TIMO_DATABASE_URL / TIMO_REDIS_URL / TIMO_BROKER_URL when set, embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from events.model import new_event_id, serialise_trusted  # noqa: E402
from events.publisher import EventPublisher, producer_app  # noqa: E402
from timo_hub.platform import migrate  # noqa: E402
from timo_hub.platform.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.platform.runtime import build_runtime  # noqa: E402
from timo_hub.platform.settings import Settings  # noqa: E402


def main() -> None:
    """Publish at the rate for the duration, then check the log."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="events per second")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="timo-bench-publishing-"))
    try:
        _run(home, args.rate, args.seconds)
    finally:
        release_services(home)
        shutil.rmtree(home, ignore_errors=True)


def _run(home: Path, rate: int, seconds: int) -> None:
    settings = resolve_services(Settings.from_env(home=home))
    migrate.migrate(settings.database_url or "")
    runtime = build_runtime(settings)
    app = producer_app(settings.effective_broker_url)
    with app.connection() as conn:
        app.control.purge(connection=conn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMO_")}
    env.update(
        {
            "TIMO_HOME": str(home),
            "TIMO_DATABASE_URL": settings.database_url or "",
            "TIMO_REDIS_URL": settings.redis_url or "",
            "TIMO_BROKER_URL": settings.effective_broker_url,
        }
    )
    celery = str(Path(sys.executable).parent / "celery")
    command = [celery, "-A", "workers.entry", "worker", "--loglevel", "WARNING", "-Q", "events"]
    command += ["--concurrency", "1", "--without-mingle", "--without-gossip"]
    log = open(home / "worker.log", "a")  # noqa: SIM115 - open for the worker's whole life
    worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
    publisher = EventPublisher(home / "spool", settings.effective_broker_url, runtime.database)
    account = uuid.uuid4()
    try:
        published, samples, shipper_cpu = _publish(publisher, account, rate, seconds)
        started = time.monotonic()
        confirmed = publisher.drain(timeout=300, verified=True)
        drain_seconds = time.monotonic() - started
        with runtime.database.connection() as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT event_id) FROM events WHERE account_id = %s",
                (account,),
            ).fetchone()
            projected = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM usage_daily WHERE account_id = %s",
                (account,),
            ).fetchone()
        assert row is not None and projected is not None
        _report(rate, seconds, published, samples, shipper_cpu, confirmed, drain_seconds)
        rows, distinct, daily = int(row[0]), int(row[1]), int(projected[0])
        print(
            f"in the log: {rows:,} rows ({distinct:,} distinct), usage_daily {daily:,}; "
            f"lost {published - distinct:,}, doubled {rows - distinct + daily - published:,}"
        )
    finally:
        publisher.close()
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
        runtime.close()


def _publish(
    publisher: EventPublisher, account: uuid.UUID, rate: int, seconds: int
) -> tuple[int, list[tuple[float, float, int]], float]:
    """Append `rate` events a second for `seconds`; sample (lag s, unshipped, unconfirmed)."""
    key = str(uuid.uuid4())
    tick = 0.01
    per_tick = max(rate * tick, 1)
    published = 0
    samples: list[tuple[float, float, int]] = []
    publisher.publish_line(_line(account, key))  # starts the shipper thread
    published += 1
    shipper = next(t for t in threading.enumerate() if t.name == "event-shipper")
    cpu_before = _thread_cpu(shipper)
    start = time.monotonic()
    next_sample = start + 1
    owed = 0.0
    ticks = 0
    while (now := time.monotonic()) < start + seconds:
        owed += per_tick
        for _ in range(int(owed)):
            publisher.publish_line(_line(account, key))
        published += int(owed)
        owed -= int(owed)
        ticks += 1
        if now >= next_sample:
            # Bytes not yet handed to the broker, as seconds of traffic at this rate (a line is
            # about 330 bytes), and events handed over without a receipt yet.
            unshipped = publisher.spool.backlog_bytes()
            samples.append((now - start, unshipped / 330 / rate, publisher._in_flight_events))
            next_sample += 1
        # Paced by the clock, not by the loop: a slow tick is made up for by the next ones.
        time.sleep(max(start + ticks * tick - time.monotonic(), 0))
    return published, samples, _thread_cpu(shipper) - cpu_before


def _line(account: uuid.UUID, key: str) -> str:
    return serialise_trusted(
        new_event_id(),
        datetime.now(UTC),
        str(account),
        key,
        "GET",
        "/api/v1/account/quota",
        200,
        0.412,
        os.urandom(16).hex(),
    )


def _thread_cpu(thread: threading.Thread) -> float:
    for info in psutil.Process().threads():
        if info.id == thread.native_id:
            return float(info.user_time + info.system_time)
    return 0.0


def _report(
    rate: int,
    seconds: int,
    published: int,
    samples: list[tuple[float, float, int]],
    shipper_cpu: float,
    confirmed: bool,
    drain_seconds: float,
) -> None:
    print(f"offered {rate:,} events/s for {seconds} s: published {published:,}")
    print(f"{'second':>7}{'spool lag s':>13}{'unconfirmed':>13}")
    for at, lag, unconfirmed in samples[:: max(len(samples) // 12, 1)]:
        print(f"{at:>7.0f}{lag:>13.2f}{unconfirmed:>13,}")
    lags = [lag for _, lag, _ in samples]
    backlog = [unconfirmed for _, _, unconfirmed in samples]
    half = len(samples) // 2
    first, second = statistics.median(backlog[:half]), statistics.median(backlog[half:])
    # Bounded: the second half's backlog is no larger than the first's plus a second of traffic.
    verdict = "bounded" if second <= first + rate else "GROWING"
    print(
        f"spool lag: max {max(lags):.2f} s, median {statistics.median(lags):.2f} s; unconfirmed: "
        f"max {max(backlog):,}, median {first:,.0f} in the first half and {second:,.0f} in the "
        f"second: {verdict}"
    )
    print(f"shipper thread CPU: {shipper_cpu / published * 1e6:.1f} µs per event")
    state = "all confirmed" if confirmed else "NOT all confirmed"
    print(f"after the last append: {state} in {drain_seconds:.1f} s")


if __name__ == "__main__":
    main()
