"""Ingestion throughput of one worker process, batched (ours) against one task per event.

Publishes N events the way web processes ship them (task messages of 1,000 events on the `events`
queue), then starts one worker process (`--pool solo`) and times it from its first commit to its
last. The naive baseline, in the same run, sends M events as one Celery task each, and a worker
does one INSERT and one UPSERT per task. Prints events/s for both and the ratio. Targets: >= 10x
the baseline and >= 20,000 events/s.

Run: `make bench-ingest` (or `.venv/bin/python bench/ingest.py [--events N] [--naive-events M]`).
Uses TIMO_DATABASE_URL / TIMO_REDIS_URL / TIMO_BROKER_URL when set, embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from kombu import Queue  # noqa: E402

from events.model import ApiCallRecorded, new_event_id  # noqa: E402
from events.partitions import PartitionRegistry  # noqa: E402
from events.publisher import BATCH_SIZE, EVENTS_QUEUE, INGEST_TASK, producer_app  # noqa: E402
from timo_hub.platform import migrate  # noqa: E402
from timo_hub.platform.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.platform.settings import Settings  # noqa: E402


def event_lines(count: int, start: datetime | None = None) -> list[str]:
    """`count` events of 50 accounts and 100 keys, 7 ms apart from `start` (three days ago)."""
    accounts = [uuid.uuid4() for _ in range(50)]
    keys = [uuid.uuid4() for _ in range(100)]
    start = start or datetime.now(UTC) - timedelta(days=3)
    return [
        ApiCallRecorded(
            event_id=new_event_id(),
            occurred_at=start + timedelta(milliseconds=7 * i),
            account_id=accounts[i % 50],
            key_id=keys[i % 100],
            method="GET",
            endpoint=("/api/v1/account", "/api/v1/account/quota", "/api/v1/usage/stats")[i % 3],
            status=(200, 200, 200, 404, 429)[i % 5],
            duration_ms=1.25,
            request_id=uuid.uuid4().hex,
        ).to_json()
        for i in range(count)
    ]


def count_events(url: str) -> int:
    """Rows in the event log."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]


def reset_log(url: str) -> None:
    """Empty the event log and the projection."""
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE events, usage_daily")


def purge_queues(broker_url: str) -> None:
    """Empty the broker's queues (the naive baseline's too)."""
    app = producer_app(broker_url)
    with app.connection() as conn:
        app.control.purge(connection=conn)
        for name in ("naive_events",):
            Queue(name, channel=conn.default_channel).declare()
            conn.default_channel.queue_purge(name)


def solo_worker(celery: str, app: str, queue: str) -> list[str]:
    """One worker process: the solo pool runs tasks in the consuming process itself."""
    return [
        celery,
        "-A",
        app,
        "worker",
        "--pool",
        "solo",
        "-Q",
        queue,
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "WARNING",
    ]


def publish_batches(broker_url: str, lines: list[str]) -> None:
    """Send `lines` to the `events` queue as web processes ship them, `BATCH_SIZE` a message."""
    app = producer_app(broker_url)
    with app.producer_or_acquire() as producer:
        for i in range(0, len(lines), BATCH_SIZE):
            app.send_task(
                INGEST_TASK,
                args=[lines[i : i + BATCH_SIZE]],
                queue=EVENTS_QUEUE,
                producer=producer,
            )


def _time_worker(command: list[str], env: dict[str, str], url: str, expected: int) -> float:
    worker = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 600
        while count_events(url) < expected:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"worker stalled at {count_events(url)} of {expected} events")
            time.sleep(0.02)
        done = datetime.now(UTC)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    with psycopg.connect(url) as conn:
        first = conn.execute("SELECT min(ingested_at) FROM events").fetchone()[0]  # type: ignore[index]
    return (done - first).total_seconds()


def main() -> None:
    """Run both measurements and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="timo-bench-ingest-")
    try:
        settings = resolve_services(Settings.from_env(home=Path(home)))
        url = settings.database_url or ""
        migrate.migrate(url)
        reset_log(url)
        env = {
            **os.environ,
            "TIMO_HOME": home,
            "TIMO_DATABASE_URL": url,
            "TIMO_REDIS_URL": settings.redis_url or "",
            "TIMO_BROKER_URL": settings.effective_broker_url,
            "PYTHONPATH": str(ROOT),
        }
        celery = str(Path(sys.executable).parent / "celery")

        # Leftovers (say, from the hot-path bench) skew it.
        purge_queues(settings.effective_broker_url)
        lines = event_lines(args.events)
        with psycopg.connect(url) as conn:  # partitions exist in production ahead of time
            PartitionRegistry().ensure(
                conn,
                {
                    datetime.now(UTC).date().replace(day=1),
                    (datetime.now(UTC) - timedelta(days=3)).date().replace(day=1),
                },
            )
        publish_batches(settings.effective_broker_url, lines)
        batched = _time_worker(
            solo_worker(celery, "workers.entry", EVENTS_QUEUE), env, url, args.events
        )

        reset_log(url)
        naive_lines = event_lines(args.naive_events)
        naive = producer_app(settings.effective_broker_url)
        with naive.producer_or_acquire() as producer:
            for line in naive_lines:
                naive.send_task(
                    "naive.ingest", args=[line], queue="naive_events", producer=producer
                )
        baseline = _time_worker(
            solo_worker(celery, "bench.naive_worker", "naive_events"), env, url, args.naive_events
        )
        reset_log(url)
    finally:
        release_services(Path(home))
        shutil.rmtree(home, ignore_errors=True)

    ours, theirs = args.events / batched, args.naive_events / baseline
    print(f"{'ingestion, one worker process':<40}{'events':>9}{'seconds':>9}{'events/s':>10}")
    print(f"{'batched (1,000 per message)':<40}{args.events:>9}{batched:>9.2f}{ours:>10.0f}")
    print(
        f"{'naive (1 task, 1 INSERT + 1 UPSERT each)':<40}{args.naive_events:>9}"
        f"{baseline:>9.2f}{theirs:>10.0f}"
    )
    print(f"ratio {ours / theirs:.1f}x  (target >= 10x; >= 20,000 events/s)")


if __name__ == "__main__":
    main()
