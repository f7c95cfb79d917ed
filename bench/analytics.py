"""Analytics benchmarks: latency against stored volume, and forecast accuracy on real series.

`latency` loads two accounts with the same keys, routes and statuses and the same daily shape (a
weekly pattern, growth and noise) over the 120 days before today, one with 10,000 events and one
with 10,000,000 (written straight into the event log by server-side INSERTs, then `usage_daily`
rebuilt from the log as `projections rebuild` does), and times, in-process through the Flask app,
alternating between the accounts:

* `GET /usage/stats?period=90d`;
* `GET /usage/forecast?days=90` computed (the stored forecast deleted before each call);
* `GET /usage/forecast?days=90` served from the stored forecast.

Target: large/small below 1.5 for each. `accuracy` runs `bench/forecast_accuracy.py`.

Run: `make bench-analytics` (or `.venv/bin/python bench/analytics.py [latency|accuracy|all]`).
Uses TIMO_DATABASE_URL / TIMO_REDIS_URL / TIMO_BROKER_URL when set, embedded servers otherwise; the
bench's accounts and their events are deleted afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from api import close_app, create_app  # noqa: E402
from events import projection_rebuild  # noqa: E402
from events.partitions import PartitionRegistry  # noqa: E402
from timo_hub.accounts import service  # noqa: E402
from timo_hub.platform import migrate  # noqa: E402
from timo_hub.platform.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.platform.runtime import Runtime, build_runtime  # noqa: E402
from timo_hub.platform.settings import Settings  # noqa: E402

HISTORY_DAYS = 120
WEEKLY = (1.15, 1.2, 1.15, 1.1, 1.0, 0.45, 0.35)  # Monday first
STATS = "/api/v1/usage/stats?period=90d"
FORECAST = "/api/v1/usage/forecast?days=90"
CHUNK = 1_000_000
# Every event gets one of 3 keys, 4 routes and 5 statuses, cycling, so both accounts have the same
# 60 (key, route, status) combinations each day: stored rows grow with days, not with calls.
LOAD_EVENTS = """
INSERT INTO events (event_id, occurred_at, account_id, key_id, method, endpoint, status,
                    duration_ms, request_id, schema_version)
SELECT gen_random_uuid(),
       %(start)s::timestamptz + (i::double precision / %(count)s) * interval '1 day',
       %(account)s,
       (%(keys)s::uuid[])[1 + (%(offset)s + i) %% 3],
       'GET',
       (ARRAY['/api/v1/account', '/api/v1/account/quota', '/api/v1/usage/stats',
        '/api/v1/usage/forecast'])[1 + (i / 3) %% 4],
       (ARRAY[200, 200, 404, 429, 500])[1 + (i / 12) %% 5],
       1 + (i %% 50),
       'bench-' || (%(offset)s + i),
       1
FROM generate_series(0, %(count)s - 1) AS i
"""
DELETE_ACCOUNT_DATA = (
    "DELETE FROM events WHERE account_id = %(account)s",
    "DELETE FROM usage_daily WHERE account_id = %(account)s",
    "DELETE FROM accounts WHERE id = %(account)s",
)


def _daily_counts(total: int, first: date, days: int = HISTORY_DAYS) -> list[int]:
    """`total` calls over the history with one fixed shape (weekly pattern, growth, noise), so
    both accounts' series are the same up to scale and their models do the same work."""
    rng = np.random.default_rng(11)
    weights = np.array(
        [
            WEEKLY[(first + timedelta(days=d)).weekday()]
            * (1 + 0.5 * d / days)
            * rng.lognormal(0, 0.1)
            for d in range(days)
        ]
    )
    counts = np.floor(total * weights / weights.sum()).astype(int)
    counts[-1] += total - counts.sum()
    return [int(c) for c in counts]


def load_history(
    runtime: Runtime,
    account: uuid.UUID,
    keys: list[uuid.UUID],
    total: int,
    days: int = HISTORY_DAYS,
) -> None:
    """`total` events of the account over the `days` full days before today, in the log."""
    # Full days before today, so today's partial day does not depend on the hour the bench runs.
    first = datetime.now(UTC).date() - timedelta(days=days)
    with runtime.database.connection() as conn:
        months = {(first + timedelta(days=d)).replace(day=1) for d in range(days + 1)}
        PartitionRegistry().ensure(conn, months)
    offset = 0
    with tqdm(total=total, unit="event", unit_scale=True, desc=f"load {total:,}") as bar:
        for d, count in enumerate(_daily_counts(total, first, days)):
            day = first + timedelta(days=d)
            for chunk_start in range(0, count, CHUNK):
                chunk = min(CHUNK, count - chunk_start)
                with runtime.database.connection() as conn:
                    conn.execute(
                        LOAD_EVENTS,
                        {
                            "start": datetime(day.year, day.month, day.day, tzinfo=UTC),
                            "account": account,
                            "keys": keys,
                            "offset": offset,
                            "count": chunk,
                        },
                    )
                offset += chunk
                bar.update(chunk)


def latency(small: int, large: int, repeat: int) -> list[str]:
    """Load both accounts, time the endpoints, print the table; returns missed targets."""
    home = Path(tempfile.mkdtemp(prefix="timo-bench-analytics-"))
    settings = resolve_services(Settings.from_env(home=home))
    runtime = build_runtime(settings)
    accounts: dict[str, tuple[uuid.UUID, str]] = {}
    app = None
    try:
        migrate.migrate(settings.database_url or "")
        for label, total in (("small", small), ("large", large)):
            account, issued = service.create_account(
                runtime, f"bench-{label}-{uuid.uuid4().hex[:8]}@example.com", "enterprise"
            )
            keys = [issued.key.id]
            keys += [service.issue_key(runtime, account.id, f"key {i}").key.id for i in (2, 3)]
            accounts[label] = (account.id, issued.secret)
            load_history(runtime, account.id, keys, total)
        first = (datetime.now(UTC) - timedelta(days=HISTORY_DAYS + 1)).date()
        days = projection_rebuild.days_to_rebuild(runtime.database, first)
        with tqdm(total=len(days), unit="day", desc="rebuild usage_daily") as bar:
            projection_rebuild.rebuild(runtime.database, first, progress=bar.update)

        app = create_app({"SETTINGS": settings})
        client = app.test_client()
        results: dict[str, dict[str, list[float]]] = {
            label: {name: [] for name in ("stats", "forecast computed", "forecast stored")}
            for label in accounts
        }

        def request(label: str, path: str) -> float:
            headers = {"Authorization": f"Bearer {accounts[label][1]}"}
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(
                    f"{path}: {response.status_code} {response.get_data(as_text=True)}"
                )
            return elapsed

        def forget(label: str) -> None:
            with runtime.database.connection() as conn:
                conn.execute("DELETE FROM forecasts WHERE account_id = %s", (accounts[label][0],))

        # Alternate the accounts request by request, so machine noise hits both alike.
        for round_ in range(repeat + 3):
            for label in accounts:
                stats = request(label, STATS)
                forget(label)
                computed = request(label, FORECAST)
                stored = request(label, FORECAST)
                if round_ >= 3:  # warm-up rounds are not counted
                    results[label]["stats"].append(stats)
                    results[label]["forecast computed"].append(computed)
                    results[label]["forecast stored"].append(stored)
        rows = {}
        with runtime.database.connection() as conn:
            for label, (account_id, _) in accounts.items():
                rows[label] = conn.execute(
                    "SELECT count(*) FROM usage_daily WHERE account_id = %s", (account_id,)
                ).fetchone()[0]  # type: ignore[index]
    finally:
        if app is not None:
            close_app(app)
        with runtime.database.connection() as conn:
            for account_id, _ in accounts.values():
                for statement in DELETE_ACCOUNT_DATA:
                    conn.execute(statement, {"account": account_id})
        runtime.close()
        release_services(home)
        shutil.rmtree(home, ignore_errors=True)

    small_rows, large_rows = rows["small"], rows["large"]
    print(
        f"\naccounts: {small:,} events ({small_rows:,} usage_daily rows) and {large:,} events "
        f"({large_rows:,} rows), {HISTORY_DAYS} days; in-process, {repeat} requests each"
    )
    print(
        f"{'endpoint':<36}{'small p50':>10}{'large p50':>10}{'small p95':>10}{'large p95':>10}"
        f"{'ratio p50':>10}"
    )
    missed = []
    for name, path in (
        ("stats", "/usage/stats?period=90d"),
        ("forecast computed", "/usage/forecast?days=90 (computed)"),
        ("forecast stored", "/usage/forecast?days=90 (stored)"),
    ):
        s, g = results["small"][name], results["large"][name]
        ratio = statistics.median(g) / statistics.median(s)
        print(
            f"{path:<36}{statistics.median(s):>9.1f}ms{statistics.median(g):>8.1f}ms"
            f"{_p95(s):>8.1f}ms{_p95(g):>8.1f}ms{ratio:>10.2f}"
        )
        if ratio >= 1.5:
            missed.append(f"{name} large/small {ratio:.2f}")
    print("target: large/small below 1.5 for each")
    return missed


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    """Run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=("latency", "accuracy", "all"), default="all")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--origins", type=int, default=26, help="accuracy: weekly origins")
    args = parser.parse_args()
    missed = []
    if args.part in ("latency", "all"):
        missed += latency(args.small, args.large, args.requests)
    if args.part in ("accuracy", "all"):
        from bench import forecast_accuracy

        sys.argv = [sys.argv[0], "--origins", str(args.origins)]
        forecast_accuracy.main()
    if missed:
        print(f"latency targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
