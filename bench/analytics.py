"""Analytics benchmarks: latency against stored volume, and forecast accuracy on real series.

`latency` loads two accounts with the same keys, routes and statuses over the same 120 days, one
with 10,000 events and one with 10,000,000 (written straight into the event log with one
server-side INSERT per million, then `usage_daily` rebuilt from the log as `projections rebuild`
does), and times, in-process through the Flask app:

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from api import close_app, create_app  # noqa: E402
from api.accounts import service  # noqa: E402
from events import projections, store  # noqa: E402
from timo_hub import migrate  # noqa: E402
from timo_hub.embedded import release_services, resolve_services  # noqa: E402
from timo_hub.runtime import Runtime, build_runtime  # noqa: E402
from timo_hub.settings import Settings  # noqa: E402

HISTORY_DAYS = 120
CHUNK = 1_000_000
# Every event gets one of 3 keys, 4 routes and 5 statuses, cycling, so both accounts have the same
# 60 (key, route, status) combinations each day: stored rows grow with days, not with calls.
LOAD_EVENTS = """
INSERT INTO events (event_id, occurred_at, account_id, key_id, method, endpoint, status,
                    duration_ms, request_id, schema_version)
SELECT gen_random_uuid(),
       %(start)s::timestamptz + ((%(offset)s + i)::double precision / %(total)s)
           * %(span)s * interval '1 second',
       %(account)s,
       (%(keys)s::uuid[])[1 + i %% 3],
       'GET',
       (ARRAY['/account', '/account/quota', '/usage/stats', '/usage/forecast'])[1 + (i / 3) %% 4],
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


def _load(runtime: Runtime, account: uuid.UUID, keys: list[uuid.UUID], total: int) -> None:
    end = datetime.now(UTC) - timedelta(minutes=1)
    start = end - timedelta(days=HISTORY_DAYS)
    with runtime.database.connection() as conn:
        months = {
            (start + timedelta(days=d)).date().replace(day=1) for d in range(HISTORY_DAYS + 1)
        }
        store.PartitionRegistry().ensure(conn, months)
    with tqdm(total=total, unit="event", unit_scale=True, desc=f"load {total:,}") as bar:
        for offset in range(0, total, CHUNK):
            count = min(CHUNK, total - offset)
            with runtime.database.connection() as conn:
                conn.execute(
                    LOAD_EVENTS,
                    {
                        "start": start,
                        "offset": offset,
                        "total": total,
                        "span": HISTORY_DAYS * 86400,
                        "account": account,
                        "keys": keys,
                        "count": count,
                    },
                )
            bar.update(count)


def _time(call: object, repeat: int, before: object = None) -> list[float]:
    timings = []
    for _ in range(repeat):
        if before is not None:
            before()  # type: ignore[operator]
        started = time.perf_counter()
        response = call()  # type: ignore[operator]
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(
                f"unexpected {response.status_code}: {response.get_data(as_text=True)}"
            )
    return timings


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
            _load(runtime, account.id, keys, total)
        first = (datetime.now(UTC) - timedelta(days=HISTORY_DAYS + 1)).date()
        days = projections.days_to_rebuild(runtime.database, first)
        with tqdm(total=len(days), unit="day", desc="rebuild usage_daily") as bar:
            projections.rebuild(runtime.database, first, progress=bar.update)

        app = create_app({"SETTINGS": settings})
        client = app.test_client()
        results: dict[str, dict[str, list[float]]] = {}
        for label, (account_id, secret) in accounts.items():
            headers = {"Authorization": f"Bearer {secret}"}

            def stats(headers: dict[str, str] = headers) -> object:
                return client.get("/api/v1/usage/stats?period=90d", headers=headers)

            def forecast(headers: dict[str, str] = headers) -> object:
                return client.get("/api/v1/usage/forecast?days=90", headers=headers)

            def forget(account_id: uuid.UUID = account_id) -> None:
                with runtime.database.connection() as conn:
                    conn.execute("DELETE FROM forecasts WHERE account_id = %s", (account_id,))

            _time(stats, 3)
            _time(forecast, 2, forget)
            with runtime.database.connection() as conn:
                rows = conn.execute(
                    "SELECT count(*) FROM usage_daily WHERE account_id = %s", (account_id,)
                ).fetchone()[0]  # type: ignore[index]
            results[label] = {
                "stats": _time(stats, repeat),
                "forecast computed": _time(forecast, max(repeat // 3, 5), forget),
                "forecast stored": _time(forecast, repeat),
                "rows": [float(rows)],
            }
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

    small_rows, large_rows = int(results["small"]["rows"][0]), int(results["large"]["rows"][0])
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
    parser.add_argument("--origins", type=int, default=100, help="accuracy: daily origins")
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
