"""Forecasting models for daily call counts.

Every model is fitted on `log1p(calls)`: on that scale a weekly pattern is multiplicative, a spike
is one large residual rather than a new level, and any interval maps back to non-negative counts.
Back on the count scale a model's point forecast is a median, not a mean.

A fitted model answers two questions: `point(h)`, the median forecast for the next `h` days,
and `paths(h, n, rng)`, `n` simulated futures. Intervals, monthly totals and the exhaustion date
all come from the paths, so they are mutually consistent (a total's interval is not a sum of
daily ones). Noise is resampled from the model's own residuals (bootstrap), so heavy tails and
skew in an account's history show up in its intervals.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from statsmodels.robust.norms import HuberT
from statsmodels.robust.robust_linear_model import RLM
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

WEEK = 7
# The linear model fits its trend on recent weeks only: a straight line through a year of a
# changing business says little about next month.
LINEAR_WINDOW_DAYS = 91
# ETS with a weekly season needs two full weeks; its heuristic start needs three.
SEASONAL_MIN_DAYS = 2 * WEEK
SEASONAL_HEURISTIC_MIN_DAYS = 3 * WEEK
# With under two weeks only a level can be estimated, and its spread is widened by this factor.
SHORT_HISTORY_WIDENING = 1.5
SHORT_HISTORY_MIN_SPREAD = 0.25
# How far (in robust standard deviations) a day must stray from its weekday's local median to be
# treated as a one-off spike by the seasonal model.
SPIKE_MADS = 4.0
# The spread assumed when a history has none (a factor of e^0.5 ~ 1.65 per robust deviation).
SPARSE_SPREAD = 0.5
# A perfectly flat history would otherwise give zero-width intervals.
MIN_LOG_SPREAD = 0.02


class FittedModel(Protocol):
    """A model fitted to one history, ready to forecast the days right after it."""

    @property
    def name(self) -> str:
        """Which model this is (`linear`, `seasonal`, …)."""
        ...

    def point(self, horizon: int) -> np.ndarray:
        """Median forecast of calls for each of the next `horizon` days."""
        ...

    def paths(self, horizon: int, repetitions: int, rng: np.random.Generator) -> np.ndarray:
        """Simulated futures, shape `(repetitions, horizon)`, non-negative call counts."""
        ...


def to_counts(log_values: np.ndarray) -> np.ndarray:
    """Back from the model scale to calls, never negative."""
    return np.maximum(np.expm1(log_values), 0.0)


def _resample(residuals: np.ndarray, size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    residuals = residuals[np.isfinite(residuals)]
    if residuals.size == 0 or float(np.std(residuals)) < MIN_LOG_SPREAD:
        return rng.normal(0.0, MIN_LOG_SPREAD, size)
    return rng.choice(residuals - residuals.mean(), size=size, replace=True)


@dataclass(frozen=True)
class SeasonalNaiveFit:
    """Each day as the same weekday last week; the classic baseline for weekly data."""

    log_history: np.ndarray
    name: str = "seasonal_naive"

    @classmethod
    def fit(cls, calls: np.ndarray) -> SeasonalNaiveFit:
        """Fit to a history of at least one week."""
        if calls.size < WEEK:
            raise ValueError("seasonal naive needs at least one week of history")
        return cls(np.log1p(calls))

    def _log_point(self, horizon: int) -> np.ndarray:
        last_week = self.log_history[-WEEK:]
        return last_week[np.arange(horizon) % WEEK]

    def point(self, horizon: int) -> np.ndarray:
        """Last week repeated."""
        return to_counts(self._log_point(horizon))

    def paths(self, horizon: int, repetitions: int, rng: np.random.Generator) -> np.ndarray:
        """Last week plus one resampled week-on-week change per week ahead (a seasonal walk)."""
        changes = self.log_history[WEEK:] - self.log_history[:-WEEK]
        weeks_ahead = np.arange(horizon) // WEEK + 1
        steps = _resample(changes, (repetitions, horizon, int(weeks_ahead.max())), rng)
        mask = np.arange(steps.shape[2])[None, None, :] < weeks_ahead[None, :, None]
        walk = (steps * mask).sum(axis=2)
        return to_counts(self._log_point(horizon)[None, :] + walk)


@dataclass(frozen=True)
class LevelFit:
    """A flat level with wide intervals: all that under two weeks of history can support."""

    level: float
    spread: float
    name: str = "mean"

    @classmethod
    def fit(cls, calls: np.ndarray) -> LevelFit:
        """Fit to a history of at least one day."""
        if calls.size == 0:
            raise ValueError("a level needs at least one day of history")
        logs = np.log1p(calls)
        spread = float(np.std(logs, ddof=1)) if logs.size > 1 else 0.0
        spread = max(spread, SHORT_HISTORY_MIN_SPREAD) * SHORT_HISTORY_WIDENING
        # The level itself is uncertain too: by the standard error of a mean of n days.
        spread *= math.sqrt(1.0 + 1.0 / logs.size)
        return cls(level=float(np.median(logs)), spread=spread)

    def point(self, horizon: int) -> np.ndarray:
        """The level, every day."""
        return to_counts(np.full(horizon, self.level))

    def paths(self, horizon: int, repetitions: int, rng: np.random.Generator) -> np.ndarray:
        """The level plus independent normal noise on the log scale."""
        return to_counts(self.level + rng.normal(0.0, self.spread, (repetitions, horizon)))


@dataclass(frozen=True)
class LinearFit:
    """Trend plus day-of-week effects, a robust (Huber) regression on recent weeks.

    Robust fitting keeps a one-day spike from shifting its weekday's effect; the noise in the
    paths is still resampled from all residuals, spikes included.
    """

    beta: np.ndarray
    covariance: np.ndarray
    residuals: np.ndarray
    n: int
    first_weekday: int
    name: str = "linear"

    @classmethod
    def fit(cls, calls: np.ndarray, first_weekday: int) -> LinearFit:
        """Fit to a history whose first day is `first_weekday` (Monday = 0)."""
        window = calls[-LINEAR_WINDOW_DAYS:]
        if window.size < SEASONAL_MIN_DAYS:
            raise ValueError("the linear model needs at least two weeks of history")
        first = (first_weekday + calls.size - window.size) % WEEK
        logs = np.log1p(window)
        design = _design(np.arange(window.size), first, window.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Converged to 1e-4 in deviance, not statsmodels' 1e-8: the coefficients agree to
            # 1e-7 and the fit takes a third less (nightly, every account under four weeks).
            result = RLM(logs, design, M=HuberT()).fit(tol=1e-4)
        beta = np.asarray(result.params)
        covariance = np.asarray(result.cov_params())
        if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(covariance))):
            raise ValueError("the linear fit did not converge")
        residuals = logs - design @ beta
        return cls(beta, covariance, residuals, window.size, first)

    def _future_design(self, horizon: int) -> np.ndarray:
        return _design(self.n + np.arange(horizon), self.first_weekday, self.n)

    def point(self, horizon: int) -> np.ndarray:
        """The fitted line and weekday effects, extended."""
        return to_counts(self._future_design(horizon) @ self.beta)

    def paths(self, horizon: int, repetitions: int, rng: np.random.Generator) -> np.ndarray:
        """Coefficients drawn from their sampling distribution plus resampled residuals."""
        design = self._future_design(horizon)
        betas = rng.multivariate_normal(self.beta, self.covariance, size=repetitions)
        noise = _resample(self.residuals, (repetitions, horizon), rng)
        return to_counts(betas @ design.T + noise)


def without_spikes(logs: np.ndarray) -> np.ndarray:
    """`logs` with one-off spikes and drops replaced by their weekday's local median.

    A day is a spike when it is further from the median of the same weekday in the surrounding
    three weeks than `SPIKE_MADS` robust deviations. Exponential smoothing would otherwise carry a
    single spike into its level and its weekday's seasonal state for weeks.
    """
    if logs.size < 3 * WEEK:
        return logs
    series = pd.Series(logs)
    weekday = np.arange(logs.size) % WEEK
    baseline = series.groupby(weekday).transform(
        lambda same_day: same_day.rolling(7, center=True, min_periods=3).median()
    )
    deviation = series - baseline
    mad = float(np.nanmedian(np.abs(deviation - np.nanmedian(deviation))))
    if not np.isfinite(mad):
        return logs
    if mad == 0.0:
        # Mostly-flat (often all-zero) histories: judge spikes against a fixed spread instead.
        mad = SPARSE_SPREAD
    spikes = (deviation.abs() > SPIKE_MADS * 1.4826 * mad).to_numpy()
    cleaned = logs.copy()
    cleaned[spikes] = baseline.to_numpy()[spikes]
    return cleaned


def _design(t: np.ndarray, first_weekday: int, scale: int) -> np.ndarray:
    weekday = (first_weekday + t) % WEEK
    columns = [np.ones(t.size), t / max(scale, 1)]
    columns += [(weekday == day).astype(float) for day in range(1, WEEK)]
    return np.column_stack(columns)


class EtsResults(Protocol):
    """The parts of statsmodels' `ETSResults` this module uses (statsmodels ships no types)."""

    params: np.ndarray
    resid: np.ndarray

    def forecast(self, steps: int) -> np.ndarray:
        """Point forecast of the next `steps` values."""
        ...

    def simulate(
        self,
        nsimulations: int,
        *,
        anchor: str,
        repetitions: int,
        random_errors: str,
        random_state: int,
    ) -> np.ndarray:
        """Simulated future paths, shape `(nsimulations, repetitions)`."""
        ...


@dataclass(frozen=True)
class SeasonalFit:
    """Exponential smoothing (ETS) with a damped trend and an additive weekly season (log scale)."""

    result: EtsResults
    name: str = "seasonal"

    @classmethod
    def fit(cls, calls: np.ndarray, params: np.ndarray | None = None) -> SeasonalFit:
        """Fit to a history of at least two weeks.

        With `params` (from an earlier fit to a longer history) the smoothing parameters are
        reused instead of estimated: a backtest's many refits then cost a filter pass each.
        """
        if calls.size < SEASONAL_MIN_DAYS:
            raise ValueError("the seasonal model needs at least two weeks of history")
        logs = without_spikes(np.log1p(calls))
        if float(np.ptp(logs)) == 0.0:
            # ETS cannot estimate anything from a constant; a tiny jitter keeps it defined.
            logs = logs + np.linspace(0.0, 1e-6, logs.size)
        init = "heuristic" if calls.size >= SEASONAL_HEURISTIC_MIN_DAYS else "estimated"
        model = ETSModel(
            logs,
            error="add",
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=WEEK,
            initialization_method=init,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if params is not None and init == "heuristic":
                result = model.smooth(params)
            else:
                result = model.fit(disp=False)
        if not np.all(np.isfinite(result.forecast(WEEK))):
            raise ValueError("the seasonal fit did not converge")
        return cls(result)

    @property
    def params(self) -> np.ndarray:
        """The estimated smoothing parameters."""
        return np.asarray(self.result.params)

    def point(self, horizon: int) -> np.ndarray:
        """The smoothed level, damped trend and weekly season, extended."""
        return to_counts(np.asarray(self.result.forecast(horizon)))

    def paths(self, horizon: int, repetitions: int, rng: np.random.Generator) -> np.ndarray:
        """Futures simulated by the state-space model with bootstrapped errors."""
        seed = int(rng.integers(0, 2**31 - 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulated = self.result.simulate(
                horizon,
                anchor="end",
                repetitions=repetitions,
                random_errors="bootstrap",
                random_state=seed,
            )
        values = np.asarray(simulated, dtype=np.float64).reshape(horizon, repetitions).T
        residuals = np.asarray(self.result.resid, dtype=np.float64)
        if float(np.std(residuals)) < MIN_LOG_SPREAD:
            values = values + rng.normal(0.0, MIN_LOG_SPREAD, values.shape)
        return to_counts(values)
