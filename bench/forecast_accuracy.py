"""Forecast accuracy on real series: a rolling-origin backtest of auto, linear, seasonal and the
seasonal-naive baseline (same weekday last week).

At each of `origins` consecutive daily origins every model is fitted on up to 365 days before the
origin and forecasts 30 days. Printed per series and model: sMAPE and MASE at h=7 and h=30, the
mean and p90 absolute % error of the 30-day total (the median of the simulated totals, as the API
projects it), the empirical coverage of the daily 80%/95% intervals and of the 30-day total's 80%
interval, and the p95 time of one whole `forecast()` (fit, auto's own backtest, simulation).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from analytics.backtest import mase_scale, smape
from analytics.forecasting import forecast
from analytics.history import MAX_HISTORY_DAYS
from bench import datasets

MODELS = ("auto", "linear", "seasonal", "seasonal_naive")
HORIZON = 30


@dataclass
class Scores:
    """Per-origin measurements of one model on one series."""

    smape7: list[float]
    smape30: list[float]
    mase7: list[float]
    mase30: list[float]
    total_error: list[float]
    covered80: list[float]
    covered95: list[float]
    total_covered80: list[float]
    seconds: list[float]
    chosen: list[str]


def evaluate(args: tuple[str, str, int]) -> tuple[str, str, Scores]:
    """Backtest one model on one series."""
    name, model, origins = args
    series = datasets.load(name, MAX_HISTORY_DAYS + origins + HORIZON - 1)
    values = series.to_numpy()
    scores = Scores(*([] for _ in range(10)))
    first_origin = values.size - HORIZON - origins + 1
    for origin in range(first_origin, first_origin + origins):
        history = series.iloc[max(0, origin - MAX_HISTORY_DAYS) : origin]
        actual = values[origin : origin + HORIZON]
        started = time.perf_counter()
        result = forecast(history, HORIZON, model)
        scores.seconds.append(time.perf_counter() - started)
        scores.chosen.append(result.model)
        predicted = result.predicted
        scale = mase_scale(history.to_numpy())
        scores.smape7.append(smape(actual[:7], predicted[:7]))
        scores.smape30.append(smape(actual, predicted))
        scores.mase7.append(float(np.mean(np.abs(actual[:7] - predicted[:7]))) / scale)
        scores.mase30.append(float(np.mean(np.abs(actual - predicted))) / scale)
        totals = result.paths.sum(axis=1)
        low, median, high = np.quantile(totals, [0.1, 0.5, 0.9])
        scores.total_error.append(abs(median - actual.sum()) / actual.sum() * 100)
        scores.total_covered80.append(float(low <= actual.sum() <= high))
        scores.covered80.append(_share_within(actual, result.lower80, result.upper80))
        scores.covered95.append(_share_within(actual, result.lower95, result.upper95))
    return name, model, scores


def _share_within(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((lower <= actual) & (actual <= upper)))


def main() -> None:
    """Run the backtest and print one table per series plus the target checks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--origins", type=int, default=100, help="daily origins per series")
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    options = parser.parse_args()
    jobs = [(name, model, options.origins) for name in datasets.SERIES for model in MODELS]
    with ProcessPoolExecutor(options.jobs) as pool:
        results = {(name, model): s for name, model, s in pool.map(evaluate, jobs)}
    header = (
        f"{'model':15s} {'sMAPE7':>7s} {'sMAPE30':>7s} {'MASE7':>6s} {'MASE30':>6s} "
        f"{'tot%':>6s} {'tot%p90':>7s} {'cov80':>6s} {'cov95':>6s} {'totcov80':>8s} {'p95 s':>6s}"
    )
    failures = []
    for name in datasets.SERIES:
        print(f"\n{name}: {options.origins} daily origins, horizons 7 and 30 days")
        print(header)
        for model in MODELS:
            s = results[(name, model)]
            print(
                f"{model:15s} {np.mean(s.smape7):7.2f} {np.mean(s.smape30):7.2f} "
                f"{np.mean(s.mase7):6.3f} {np.mean(s.mase30):6.3f} "
                f"{np.mean(s.total_error):6.2f} {np.percentile(s.total_error, 90):7.2f} "
                f"{np.mean(s.covered80) * 100:5.1f}% {np.mean(s.covered95) * 100:5.1f}% "
                f"{np.mean(s.total_covered80) * 100:7.1f}% {np.percentile(s.seconds, 95):6.3f}"
            )
        auto, naive = results[(name, "auto")], results[(name, "seasonal_naive")]
        picks = {m: auto.chosen.count(m) for m in set(auto.chosen)}
        print(f"auto chose: {picks}")
        for h, a, b in (("7", auto.smape7, naive.smape7), ("30", auto.smape30, naive.smape30)):
            ratio = np.mean(a) / np.mean(b)
            print(f"  sMAPE h={h}: auto/seasonal-naive {ratio:.3f} (target <= 1.000)")
            if ratio > 1:
                failures.append(f"{name} sMAPE h={h}")
        gap = np.mean(auto.total_error) - np.mean(naive.total_error)
        print(f"  30-day total error: auto - seasonal-naive {gap:+.2f} points (target <= +1)")
        if gap > 1:
            failures.append(f"{name} total error")
        cov80, cov95 = np.mean(auto.covered80) * 100, np.mean(auto.covered95) * 100
        print(f"  daily coverage 80%: {cov80:.1f} (70-90)  95%: {cov95:.1f} (88-99)")
        if not (70 <= cov80 <= 90 and 88 <= cov95 <= 99):
            failures.append(f"{name} coverage")
        p95 = max(np.percentile(results[(name, m)].seconds, 95) for m in MODELS)
        print(f"  p95 forecast time {p95:.3f} s (target <= 1 s)")
        if p95 > 1:
            failures.append(f"{name} fit time")
    print("\nall targets met" if not failures else f"\ntargets missed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
