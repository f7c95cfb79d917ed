"""What the nightly forecast costs per account: today's code against the code before issue 19.

`--accounts` synthetic but realistic accounts (`synthetic_accounts`: levels from a few calls a
day to tens of thousands, weekly shapes, trends, noise, spikes, outages with zero days, level
shifts, histories from two weeks to a year, a share of sparse accounts) are forecast the way the
nightly job forecasts them, without the database: the history as `daily_history` makes it, the
default forecast (`auto`, 30 days and the rest of the month), the month's projection and the
stored body (`forecast_body`). The database's share is measured by `bench/capacity.py`.

Contenders, alternating round by round, each in a fresh process with one BLAS thread (as web
and worker processes set it), after one untimed batch:

* **after**: this tree, accounts in batches of `timo_hub.usage.forecasts.BATCH_ACCOUNTS`
  (`forecast_many`), every account;
* **before**: the tree at `--before-rev` (a git worktree made here), one account at a time, on
  the first `--before-accounts` accounts (it costs about a tenth of a second each).

Printed per round and as medians: CPU ms per account (the process's user + system time over the
accounts forecast), accounts per second of wall time, and the ratio before/after. The target of
issue 19: at most 3.5 CPU ms per account, at least 30 times less than before.

Run: `make bench-forecast-cost` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# This script's own folder is first on the path; it holds an `analytics.py` of its own. A child
# imports the product from the tree on PYTHONPATH (this one's, or the one before); the parent
# from this tree.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if "--child" not in sys.argv:
    sys.path.insert(0, str(ROOT))

# The last commit before issue 19 (`bench.worktrees.BEFORE_ISSUE_19`; not imported here: a
# child must not import from this tree).
BEFORE_REV = "0da0a8e"
TODAY = date(2026, 12, 4)
TARGET_MS = 3.5


def main() -> None:
    """Alternate the contenders for `--rounds` rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--before-accounts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-rev", default=BEFORE_REV)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument(
        "--real",
        action="store_true",
        help="histories of 120-150 days cut from bench.datasets' real series (as issue 19 "
        "measured today's code), instead of synthetic accounts",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(Path(options.child))
        return
    from bench.worktrees import worktree

    with (
        tempfile.TemporaryDirectory(prefix="forecast-cost-") as scratch,
        worktree(options.before_rev, Path(scratch)) as before_tree,
    ):
        _compare(options, Path(scratch), before_tree)


def _compare(options: argparse.Namespace, work: Path, before_tree: Path) -> None:
    from bench.synthetic_accounts import synthetic_accounts
    from bench.worktrees import run_on

    if options.real:
        accounts = _real_histories(options.accounts)
    else:
        accounts = synthetic_accounts(options.accounts, TODAY, seed=options.seed)
    data = work / "accounts.npz"
    np.savez(
        data,
        lengths=np.array([a.size for a in accounts]),
        calls=np.concatenate(accounts),
    )
    kinds = {"after": (ROOT, options.accounts), "before": (before_tree, options.before_accounts)}
    print(
        f"forecast cost: {options.accounts:,} {'real' if options.real else 'synthetic'} "
        "accounts "
        f"(history days: median {int(np.median([a.size for a in accounts]))}, "
        f"{sum(a.size < 28 for a in accounts)} under four weeks; median calls/day "
        f"{np.median([a[-28:].mean() for a in accounts]):.0f}); before = {options.before_rev} "
        f"on the first {options.before_accounts}; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"{'round':<7}{'contender':<10}{'accounts':>9}{'CPU ms/acct':>13}{'accounts/s':>12}")
    figures: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    for round_ in range(options.rounds):
        order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
        for kind in order:
            tree, count = kinds[kind]
            job = work / f"{kind}.json"
            job.write_text(json.dumps({"data": str(data), "accounts": count, "kind": kind}))
            child = run_on(tree, Path(__file__), job)
            cpu_ms, per_second = json.loads(child.stdout.splitlines()[-1])
            figures[kind].append((cpu_ms, per_second))
            print(
                f"{round_ + 1:<7}{kind:<10}{count:>9,}{cpu_ms:>13.2f}{per_second:>12.1f}",
                flush=True,
            )
    after = statistics.median(cpu for cpu, _ in figures["after"])
    before = statistics.median(cpu for cpu, _ in figures["before"])
    print(
        f"median: after {after:.2f} CPU ms/account "
        f"({statistics.median(rate for _, rate in figures['after']):,.0f} accounts/s), before "
        f"{before:.1f} CPU ms/account "
        f"({statistics.median(rate for _, rate in figures['before']):,.1f} accounts/s); "
        f"before/after {before / after:.1f}x (target >= 30x); target <= {TARGET_MS} ms: "
        f"{'met' if after <= TARGET_MS else 'MISSED'}"
    )
    print(
        f"a million accounts: {after * 1e6 / 1000 / 3600:.2f} CPU hours a night "
        f"(before: {before * 1e6 / 1000 / 3600:.1f})"
    )


def _real_histories(count: int) -> list[np.ndarray]:
    """`count` histories of 120 to 150 days, cut at evenly spaced ends from every real series."""
    from bench import datasets

    rng = np.random.default_rng(19)
    series = [datasets.load(name, 730).to_numpy() for name in datasets.SERIES]
    histories = []
    for i in range(count):
        values = series[i % len(series)]
        days = int(rng.integers(120, 151))
        end = int(rng.integers(days, values.size + 1))
        histories.append(values[end - days : end])
    return histories


def _child(job_path: Path) -> None:
    """In a fresh process on one tree: forecast, project and build the body of each account."""
    import pandas as pd

    from analytics import forecasting
    from analytics.history import daily_history
    from analytics.month_projection import PlanOption, project_month
    from timo_hub.platform import months
    from timo_hub.usage.forecast_body import forecast_body

    job = json.loads(job_path.read_text())
    stored = np.load(job["data"])
    bounds = np.cumsum(stored["lengths"])[:-1]
    accounts = np.split(stored["calls"], bounds)[: job["accounts"]]
    plans = [
        PlanOption("free", 1_000, 0.0),
        PlanOption("starter", 100_000, 29.0),
        PlanOption("business", 10_000_000, 499.0),
        PlanOption("enterprise", None, None),
    ]
    first_day, last_day = months.month_start(TODAY), months.last_day(TODAY)
    horizon = max(31, months.days_to_month_end(TODAY))
    yesterday = TODAY - timedelta(days=1)

    def histories(batch: list[np.ndarray]) -> list[pd.Series]:
        return [
            daily_history(
                {
                    yesterday - timedelta(days=len(calls) - 1 - i): int(n)
                    for i, n in enumerate(calls)
                    if n > 0
                },
                last_day=yesterday,
                max_days=365,
            )
            for calls in batch
        ]

    def run(batch: list[np.ndarray]) -> None:
        series = histories(batch)
        if job["kind"] == "after":
            results = forecasting.forecast_many(series, horizon, first_dates=[TODAY] * len(series))
        else:
            results = [forecasting.forecast(s, horizon, "auto", first_date=TODAY) for s in series]
        for calls, result in zip(batch, results, strict=True):
            limit = int(max(calls[-30:].sum(), 1) * 1.2)
            projection = project_month(
                result,
                today=TODAY,
                month=(first_day, last_day),
                month_usage={
                    first_day + timedelta(days=i): int(calls[-(TODAY.day - 1) + i])
                    for i in range(TODAY.day - 1)
                }
                if TODAY.day > 1
                else {},
                limit=limit,
                plans=plans,
            )
            forecast_body(
                result, projection, days=30, requested_model="auto", generated_at=forecasting_now()
            ).model_dump(mode="json")

    if job["kind"] == "after":
        from timo_hub.usage.forecasts import BATCH_ACCOUNTS

        size = BATCH_ACCOUNTS
    else:
        size = 1
    run(accounts[:size])  # imports, caches: not timed
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(accounts), size):
        run(accounts[start : start + size])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps([cpu / len(accounts) * 1000, len(accounts) / wall]))


def forecasting_now() -> object:
    """When the bodies say they were generated."""
    from datetime import UTC, datetime

    return datetime(2026, 12, 4, 0, 20, tzinfo=UTC)


if __name__ == "__main__":
    main()
