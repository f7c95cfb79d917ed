"""Rolling-origin evaluation: how well a model would have forecast an account's own past.

At each origin the model is fitted on the days before it and scored on the days after, which it has
not seen. The measures are scale-free so accounts of any size compare:

* MASE: mean absolute error divided by the in-sample error of "same weekday last week" (below 1
  beats that baseline);
* sMAPE: symmetric mean absolute percentage error, 0 to 200 (MAPE is not used: one near-zero day
  makes it meaningless);
* total error: the absolute percentage error of the horizon's total, what a monthly quota cares
  about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from analytics.forecast_models import WEEK, FittedModel

ModelFitter = Callable[[np.ndarray, int], FittedModel]
"""Fits a model to `calls` whose first day is the given weekday (Monday = 0)."""


@dataclass(frozen=True)
class BacktestResult:
    """Mean errors of one model over several origins."""

    origins: int
    horizon_days: int
    mase: float
    smape: float
    total_error_pct: float | None
    """Mean absolute % error of the horizon's total; None when the actual totals were all 0."""
    log_errors: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))
    """`log1p(actual) - log1p(predicted)` for every origin (row) and day ahead (column)."""


def mase_scale(training: np.ndarray) -> float:
    """The in-sample mean absolute error of the seasonal-naive forecast (lag 7, else lag 1)."""
    for lag in (WEEK, 1):
        if training.size > lag:
            scale = float(np.mean(np.abs(training[lag:] - training[:-lag])))
            if scale > 0:
                return scale
    return 1.0


def mase(actual: np.ndarray, predicted: np.ndarray, training: np.ndarray) -> float:
    """Mean absolute scaled error of `predicted` against `actual`."""
    return float(np.mean(np.abs(actual - predicted))) / mase_scale(training)


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent; a day where both are zero counts as a perfect forecast."""
    denominator = np.abs(actual) + np.abs(predicted)
    terms = np.divide(
        2.0 * np.abs(actual - predicted),
        denominator,
        out=np.zeros_like(denominator, dtype=float),
        where=denominator > 0,
    )
    return float(np.mean(terms) * 100.0)


def total_error_pct(actual: np.ndarray, predicted_total: float) -> float | None:
    """Absolute percentage error of a forecast total; None when the actual total is zero."""
    total = float(np.sum(actual))
    if total <= 0:
        return None
    return abs(predicted_total - total) / total * 100.0


def weekly_origins(n: int, horizon: int, count: int, min_train: int) -> list[int]:
    """Up to `count` origins a week apart, the last one leaving `horizon` days to score."""
    origins: list[int] = []
    origin = n - horizon
    while origin >= min_train and len(origins) < count:
        origins.append(origin)
        origin -= WEEK
    return sorted(origins)


def rolling_origin(
    calls: np.ndarray,
    fitter: ModelFitter,
    first_weekday: int,
    horizon: int,
    origins: Sequence[int],
) -> BacktestResult:
    """Fit at each origin on `calls[:origin]`, score on the next `horizon` days."""
    if not origins:
        raise ValueError("a backtest needs at least one origin")
    mases, smapes, totals, log_errors = [], [], [], []
    for origin in origins:
        training = calls[:origin]
        actual = calls[origin : origin + horizon]
        predicted = fitter(training, first_weekday).point(actual.size)
        log_errors.append(np.log1p(actual) - np.log1p(predicted))
        mases.append(mase(actual, predicted, training))
        smapes.append(smape(actual, predicted))
        error = total_error_pct(actual, float(np.sum(predicted)))
        if error is not None:
            totals.append(error)
    return BacktestResult(
        origins=len(origins),
        horizon_days=horizon,
        mase=float(np.mean(mases)),
        smape=float(np.mean(smapes)),
        total_error_pct=float(np.mean(totals)) if totals else None,
        log_errors=np.vstack(log_errors),
    )
