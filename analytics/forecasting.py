"""`forecast()` and `forecast_many()`: forecast accounts' daily calls.

`auto` is the seasonal model of `analytics.smoothing` (robust exponential smoothing whose
parameters and intervals come from the account's own rolling-origin backtest), run for many
accounts at once by `forecast_many`: the nightly job's path, about a millisecond per account.
Short histories fall back: no calls at all gives zeros with a note; under two weeks, a flat level
with wide intervals; under four weeks, the linear model (too few origins to backtest honestly).

Asking for `linear` or `seasonal` by name fits that model to the one account (the seasonal one by
maximum likelihood, statsmodels' ETS), backtests it at up to five weekly origins and calibrates its
simulated futures against those errors (`calibrated`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from analytics import smoothing
from analytics.backtest import BacktestResult, ModelFitter, rolling_origin, weekly_origins
from analytics.forecast_models import (
    SEASONAL_MIN_DAYS,
    FittedModel,
    LevelFit,
    LinearFit,
    SeasonalFit,
    SeasonalNaiveFit,
    to_counts,
)

FITTERS: dict[str, ModelFitter] = {
    "linear": lambda calls, weekday: LinearFit.fit(calls, weekday),
    "seasonal": lambda calls, weekday: SeasonalFit.fit(calls),
    "seasonal_naive": lambda calls, weekday: SeasonalNaiveFit.fit(calls),
}
# Seasonal naive stays a benchmark baseline: as a candidate it carried spikes into whole months.

# Backtest: up to this many origins a week apart, each scored on up to 30 days it did not see.
BACKTEST_ORIGINS = 5
BACKTEST_HORIZON_DAYS = 30
BACKTEST_MIN_TRAIN_DAYS = 3 * 7
BACKTEST_MIN_HORIZON_DAYS = 7
# Interval calibration against backtest errors: matched at this quantile, scaled within bounds.
CALIBRATION_QUANTILES = (0.8, 0.95)
CALIBRATION_BUCKETS = ((0, 7), (7, 14), (14, 30))
MAX_SHARED_ERROR = 0.8
# Futures never exceed this multiple of the busiest day in the last eight weeks.
MAX_GROWTH = 3.0
GROWTH_WINDOW_DAYS = 56
# A week whose median is this far (log scale: a factor of 10) from the last two weeks' is another
# regime. Seasonal swings (a sports season, holidays) stay well inside it; going live does not.
LEVEL_SHIFT = float(np.log(10.0))
CALIBRATION_BOUNDS = (0.5, 5.0)
# Enough simulated futures for stable 2.5%/97.5% quantiles and a month total's interval.
PATHS = 1000
# `auto` takes its daily quantiles from its error pools directly; its futures only make the
# month's total and the exhaustion date (10th to 90th percentiles), for which this is plenty.
AUTO_PATHS = 200
DEFAULT_SEED = 20261128

NOTE_NO_HISTORY = "No calls yet: the forecast is zero until there is usage to learn from."
NOTE_NO_FIT = "No model could be fitted to this history; showing a flat level."
NOTE_SHORT_HISTORY = (
    "Under two weeks of history: a flat level with wide intervals; weekly patterns and trends "
    "are learned once there are at least 14 full days."
)
NOTE_NO_BACKTEST = (
    "Accuracy could not be measured on this history (it needs four weeks); treat the "
    "intervals as rough."
)


@dataclass(frozen=True)
class Forecast:
    """Daily predictions for `first_date` onwards, with intervals and the paths behind them."""

    model: str
    history_days: int
    first_date: date
    predicted: np.ndarray
    lower80: np.ndarray
    upper80: np.ndarray
    lower95: np.ndarray
    upper95: np.ndarray
    paths: np.ndarray = field(repr=False)
    """Simulated futures, shape `(n, horizon)`: the source of every interval."""
    accuracy: BacktestResult | None
    note: str | None

    @property
    def horizon(self) -> int:
        """Days forecast."""
        return int(self.predicted.size)

    def dates(self) -> list[date]:
        """The date of each forecast day."""
        return [self.first_date + timedelta(days=i) for i in range(self.horizon)]


def forecast(
    history: pd.Series,
    horizon: int,
    model: str = "auto",
    *,
    first_date: date | None = None,
    repetitions: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Forecast:
    """Forecast the `horizon` days after `history` (a zero-filled daily series, see `history`).

    `model` is one of `analytics.parameters.MODEL_CHOICES` or, for comparisons, `seasonal_naive`.

    `first_date` defaults to the day after the history's last day. Deterministic: the same inputs
    and seed give the same forecast.
    """
    if model == "auto":
        return forecast_many(
            [history], horizon, first_dates=[first_date], repetitions=repetitions, seed=seed
        )[0]
    if model not in FITTERS:
        raise ValueError(f"unknown model {model!r}")
    return _fit_one(history, horizon, model, first_date, repetitions or PATHS, seed)


def forecast_many(
    histories: Sequence[pd.Series],
    horizon: int,
    *,
    first_dates: Sequence[date | None] | None = None,
    repetitions: int | None = None,
    seed: int = DEFAULT_SEED,
) -> list[Forecast]:
    """`forecast(history, horizon, "auto")` for each history, the seasonal ones in one batch.

    An account's forecast does not depend on which others share the call.
    """
    if horizon < 1:
        raise ValueError("horizon must be at least one day")
    dates = list(first_dates) if first_dates is not None else [None] * len(histories)
    if len(dates) != len(histories):
        raise ValueError("one first date per history")
    starts = [_first_date(history, day) for history, day in zip(histories, dates, strict=True)]
    results: list[Forecast | None] = [None] * len(histories)
    arrays = [history.to_numpy(dtype=float) for history in histories]
    long_enough = [i for i, calls in enumerate(arrays) if calls.size >= smoothing.MIN_HISTORY_DAYS]
    kept = (
        dict(zip(long_enough, smoothing.kept_days([arrays[i] for i in long_enough]), strict=True))
        if long_enough
        else {}
    )
    batch = [i for i in long_enough if kept[i] >= smoothing.MIN_HISTORY_DAYS]
    for i, history in enumerate(histories):
        if i not in batch:
            results[i] = _fit_one(
                history, horizon, "linear", starts[i], repetitions or AUTO_PATHS, seed
            )
    if batch:
        smoothed = smoothing.forecast_batch(
            [arrays[i][-kept[i] :] for i in batch],
            horizon,
            repetitions=repetitions or AUTO_PATHS,
            seed=seed,
        )
        for row, i in enumerate(batch):
            results[i] = _from_batch(smoothed, row, histories[i], starts[i])
    return [result for result in results if result is not None]


def _first_date(history: pd.Series, first_date: date | None) -> date:
    if first_date is not None:
        return first_date
    if history.empty:
        raise ValueError("first_date is required when there is no history")
    return history.index[-1].date() + timedelta(days=1)


def _from_batch(
    batch: smoothing.SmoothedBatch, row: int, history: pd.Series, first_date: date
) -> Forecast:
    # Calls are whole numbers: a quantile of a day's calls is the rounded quantile of the
    # model's continuous calls (rounding keeps order). For a sparse account this matters: a
    # median of 0.3 calls is a median of no calls, and a band from 0.4 to 3 misses the zero day.
    lower95, lower80, median, upper80, upper95 = (
        np.round(np.maximum(np.expm1(q[row]), 0.0)) for q in batch.log_quantiles
    )
    used = int(batch.kept_days[row])
    note = None
    if used < min(len(history), smoothing.MAX_DAYS):
        note = (
            f"Usage changed level around {history.index[len(history) - used].date()}; "
            "only the history since then is used."
        )
    total = float(batch.total_error_pct[row])
    accuracy = BacktestResult(
        origins=int(batch.origins[row]),
        horizon_days=smoothing.BACKTEST_HORIZON,
        mase=float(batch.mase[row]),
        smape=float(batch.smape[row]),
        total_error_pct=total if np.isfinite(total) else None,
        log_errors=batch.log_errors[row],
    )
    return Forecast(
        model="seasonal",
        history_days=used,
        first_date=first_date,
        predicted=median,
        lower80=lower80,
        upper80=upper80,
        lower95=lower95,
        upper95=upper95,
        paths=batch.paths[row],
        accuracy=accuracy,
        note=note,
    )


def _fit_one(
    history: pd.Series,
    horizon: int,
    model: str,
    first_date: date | None,
    repetitions: int,
    seed: int,
) -> Forecast:
    """Fit `model` (a name in `FITTERS`) to this one history, backtest and calibrate it."""
    if horizon < 1:
        raise ValueError("horizon must be at least one day")
    calls = history.to_numpy(dtype=float)
    first_date = _first_date(history, first_date)
    rng = np.random.default_rng(seed)
    if calls.size == 0:
        zeros = np.zeros(horizon)
        paths = np.zeros((repetitions, horizon))
        return Forecast(
            "none", 0, first_date, zeros, zeros, zeros, zeros, zeros, paths, None, NOTE_NO_HISTORY
        )

    def flat_level(note: str) -> Forecast:
        return _from_fit(
            LevelFit.fit(calls), calls, first_date, horizon, rng, repetitions, None, note
        )

    if calls.size < SEASONAL_MIN_DAYS:
        return flat_level(NOTE_SHORT_HISTORY)
    kept = since_level_shift(calls)
    if kept.size < calls.size:
        shift_note = (
            f"Usage changed level around {history.index[calls.size - kept.size].date()}; "
            "only the history since then is used."
        )
        calls = kept
    else:
        shift_note = None
    weekday = (history.index[0].dayofweek + len(history) - calls.size) % 7
    try:
        fitted = FITTERS[model](calls, weekday)
    except (ValueError, np.linalg.LinAlgError):
        return flat_level(NOTE_NO_FIT)
    scores = _backtest(calls, weekday, {model: fitted})
    note = shift_note or (None if model in scores else NOTE_NO_BACKTEST)
    return _from_fit(fitted, calls, first_date, horizon, rng, repetitions, scores.get(model), note)


def _refitter(fitted: FittedModel) -> ModelFitter:
    """How the backtest refits a model at an origin: exponential smoothing keeps its parameters
    (re-estimating them at every origin would multiply the cost for little difference)."""
    if isinstance(fitted, SeasonalFit):
        params = fitted.params
        return lambda calls, weekday: SeasonalFit.fit(calls, params)
    return FITTERS[fitted.name]


def _backtest(
    calls: np.ndarray, weekday: int, fitted: dict[str, FittedModel]
) -> dict[str, BacktestResult]:
    horizon = min(BACKTEST_HORIZON_DAYS, calls.size - BACKTEST_MIN_TRAIN_DAYS)
    if horizon < BACKTEST_MIN_HORIZON_DAYS:
        return {}
    origins = weekly_origins(calls.size, horizon, BACKTEST_ORIGINS, BACKTEST_MIN_TRAIN_DAYS)
    scores = {}
    for name, model in fitted.items():
        try:
            scores[name] = rolling_origin(calls, _refitter(model), weekday, horizon, origins)
        except (ValueError, np.linalg.LinAlgError):
            continue
    return scores


def calibrated(
    paths: np.ndarray, log_errors: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Paths whose spread matches the errors the model actually made on past data.

    Each path's deviation from the median (log scale) is scaled so that the 80th and 95th
    percentiles of absolute deviations reach those of the backtest's errors, separately for the
    first week ahead, the second, and beyond (errors grow with the horizon). A model's own
    intervals assume the model is right; this corrects for how wrong it has been here.

    Past errors also move together: a forecast that starts too low tends to stay too low for
    weeks. The share of the error variance that is common to a whole backtest horizon is given
    to each future as one shared shift, so sums over many days (the month's total) are as
    uncertain as they proved to be, while each day's spread stays the same.
    """
    if log_errors.size == 0:
        return paths
    logs = np.log1p(paths)
    centre = np.median(logs, axis=0)
    deviations = logs - centre
    scales = np.ones(paths.shape[1])
    observed_days = log_errors.shape[1]
    for first, last in CALIBRATION_BUCKETS:
        if first >= min(observed_days, paths.shape[1]):
            break
        errors = np.abs(log_errors[:, first:last])
        errors = errors[np.isfinite(errors)]
        modelled = np.abs(deviations[:, first : min(last, observed_days)])
        ratios = [
            float(np.quantile(errors, q)) / m
            for q in CALIBRATION_QUANTILES
            if errors.size and (m := float(np.quantile(modelled, q))) > 0
        ]
        if ratios:
            # The wider of the two levels: a few recent origins understate the errors to come.
            scales[first:] = float(np.clip(max(ratios), *CALIBRATION_BOUNDS))
    # Scaling widens the body of the distribution; it must not stretch the tails past anything
    # the model or the backtest has seen (a bootstrapped spike times five is not a forecast).
    reach = max(float(np.nanmax(np.abs(log_errors))), float(np.max(np.abs(deviations))))
    deviations = np.clip(scales[None, :] * deviations, -reach, reach)
    shared = _shared_error_share(log_errors)
    if rng is not None and shared > 0:
        spread = deviations.std(axis=0)
        common = rng.standard_normal((paths.shape[0], 1))
        deviations = np.sqrt(1 - shared) * deviations + np.sqrt(shared) * spread[None, :] * common
    return to_counts(centre + deviations)


def _shared_error_share(log_errors: np.ndarray) -> float:
    """How much of the backtest's error variance is a shift common to a whole origin (0 to 0.8)."""
    if log_errors.shape[0] < 2 or log_errors.shape[1] < 7:
        return 0.0
    per_origin = np.nanmean(log_errors, axis=1)
    overall = float(np.nanmean(log_errors**2))
    if overall <= 0:
        return 0.0
    return float(np.clip(np.mean(per_origin**2) / overall, 0.0, MAX_SHARED_ERROR))


def since_level_shift(calls: np.ndarray) -> np.ndarray:
    """The history since the last change of level (e.g. a customer going live), if any.

    Walking back from two weeks before the end, the first week whose median (log scale) is over
    `LEVEL_SHIFT` away from the last two weeks' median marks the change; what came before it is
    a different regime that only misleads the trend. At least two weeks are always kept.
    """
    if calls.size < 4 * 7:
        return calls
    logs = np.log1p(calls)
    recent = float(np.median(logs[-14:]))
    weekly = pd.Series(logs).rolling(7).median().to_numpy()
    for end in range(calls.size - 15, 5, -1):
        if abs(weekly[end] - recent) > LEVEL_SHIFT:
            return calls[end + 1 :]
    return calls


def growth_ceiling(calls: np.ndarray) -> float:
    """The most calls a day any future may have: `MAX_GROWTH` times the recent busiest day.

    A trend fitted on the log scale is exponential; right after a step (a customer going live)
    it would extrapolate to absurd numbers. No model here can justify more than this.
    """
    recent = calls[-GROWTH_WINDOW_DAYS:]
    return float(MAX_GROWTH * max(float(np.max(recent)), 1.0)) if recent.size else np.inf


def _from_fit(
    fitted: FittedModel,
    calls: np.ndarray,
    first_date: date,
    horizon: int,
    rng: np.random.Generator,
    repetitions: int,
    accuracy: BacktestResult | None,
    note: str | None,
) -> Forecast:
    paths = fitted.paths(horizon, repetitions, rng)
    if accuracy is not None:
        paths = calibrated(paths, accuracy.log_errors, rng)
    paths = np.minimum(paths, growth_ceiling(calls))
    lower95, lower80, median, upper80, upper95 = np.quantile(
        paths, [0.025, 0.1, 0.5, 0.9, 0.975], axis=0
    )
    return Forecast(
        model=fitted.name,
        history_days=int(calls.size),
        first_date=first_date,
        predicted=median,
        lower80=lower80,
        upper80=upper80,
        lower95=lower95,
        upper95=upper95,
        paths=paths,
        accuracy=accuracy,
        note=note,
    )
