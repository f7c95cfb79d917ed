"""`analytics.smoothing` and `forecast_many`: the batched seasonal model the nightly job runs."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics import smoothing
from analytics.forecasting import forecast, forecast_many

WEEKLY = np.array([1.25, 1.15, 1.1, 1.05, 1.0, 0.45, 0.35])  # Monday first


def history(
    days: int,
    *,
    base: float = 400.0,
    slope: float = 0.0,
    noise: float = 0.05,
    seed: int = 0,
    end: date = date(2026, 11, 30),
) -> pd.Series:
    """Counts with a weekly pattern, a linear trend and log-normal noise, ending on `end`."""
    index = pd.date_range(end - timedelta(days=days - 1), periods=days, freq="D")
    rng = np.random.default_rng(seed)
    rate = (base + slope * np.arange(days)) * WEEKLY[index.dayofweek]
    return pd.Series(np.round(rate * np.exp(rng.normal(0, noise, days))), index=index)


def test_an_account_forecast_does_not_depend_on_its_batch() -> None:
    # Guards against draws or state shared across a batch: the nightly job (batches) and the API
    # (one account) must store and serve the same forecast for the same history.
    mine = history(200, seed=1)
    others = [history(90 + 10 * i, base=50 * (i + 1), noise=0.3, seed=10 + i) for i in range(5)]
    alone = forecast(mine, 31)
    batched = forecast_many([*others[:2], mine, *others[2:]], 31)[2]
    for field in ("predicted", "lower80", "upper80", "lower95", "upper95", "paths"):
        assert np.array_equal(getattr(alone, field), getattr(batched, field)), field
    assert alone.model == batched.model == "seasonal"


def test_recovers_a_weekly_pattern_and_trend() -> None:
    past = history(240, base=300, slope=1.0, noise=0.03)
    result = forecast(past, 28)
    t = np.arange(240, 268)
    dates = pd.date_range(past.index[-1] + pd.Timedelta(days=1), periods=28, freq="D")
    truth = (300 + 1.0 * t) * WEEKLY[dates.dayofweek]
    assert np.mean(np.abs(result.predicted - truth) / truth) < 0.08
    # The weekly shape: weekends forecast well below weekdays.
    assert (
        result.predicted[dates.dayofweek >= 5].max()
        < 0.6 * result.predicted[dates.dayofweek < 5].min()
    )


def test_intervals_come_from_each_accounts_own_errors() -> None:
    # Guards against one global spread: of two accounts at the same level, the one whose past
    # forecasts erred more gets wider intervals, in the same batch.
    calm, noisy = history(200, noise=0.03, seed=2), history(200, noise=0.4, seed=3)
    calm_result, noisy_result = forecast_many([calm, noisy], 30)

    def width(result) -> float:
        return float(np.median(np.log1p(result.upper80) - np.log1p(result.lower80)))

    assert width(noisy_result) > 4 * width(calm_result)
    assert calm_result.accuracy is not None and noisy_result.accuracy is not None
    assert calm_result.accuracy.mase < noisy_result.accuracy.mase
    assert calm_result.accuracy.origins >= 50


def test_intervals_cover_about_what_they_claim_on_a_stationary_account() -> None:
    # 80% intervals built from the account's own backtest cover 70-92% of a future like its past.
    covered = []
    for seed in range(8):
        full = history(230, noise=0.25, seed=100 + seed)
        result = forecast(full.iloc[:200], 30)
        actual = full.to_numpy()[200:]
        covered.append(np.mean((result.lower80 <= actual) & (actual <= result.upper80)))
    assert 0.7 <= float(np.mean(covered)) <= 0.92


def test_a_spike_moves_the_forecast_little() -> None:
    past = history(150, noise=0.05, seed=4)
    spiked = past.copy()
    spiked.iloc[-3] *= 40
    plain, with_spike = forecast_many([past, spiked], 30)
    assert np.median(with_spike.predicted / plain.predicted) < 1.25


def test_a_change_of_level_starts_the_history_again() -> None:
    low = history(120, base=5, seed=5)
    high = history(60, base=5000, seed=6)
    calls = pd.Series(
        np.concatenate([low.to_numpy(), high.to_numpy()]),
        index=pd.date_range("2026-06-04", periods=180, freq="D"),
    )
    result = forecast(calls, 30)
    assert result.model == "seasonal"
    assert result.note is not None and "changed level" in result.note
    assert 55 <= result.history_days <= 62
    assert 0.7 * 5000 < np.median(result.predicted) < 1.4 * 5000


def test_short_sparse_and_empty_histories_take_the_other_paths() -> None:
    short = history(20, seed=7)
    sparse = pd.Series(
        np.where(np.arange(100) % 9 == 0, 3.0, 0.0),
        index=pd.date_range("2026-08-23", periods=100, freq="D"),
    )
    empty = pd.Series([], index=pd.DatetimeIndex([], freq="D"), dtype=float)
    results = forecast_many([short, sparse, empty], 30, first_dates=[None, None, date(2026, 12, 1)])
    assert [r.model for r in results] == ["linear", "seasonal", "none"]
    assert np.all(results[1].upper95 >= results[1].lower95)
    assert np.all(results[1].predicted <= 3 * 3)  # never above the growth ceiling
    with pytest.raises(ValueError):
        smoothing.forecast_batch([short.to_numpy()], 30, repetitions=10, seed=1)


def test_kept_days_matches_the_level_shift_rule() -> None:
    rng = np.random.default_rng(8)
    for days, cut in ((42, 21), (100, 60), (200, 0)):
        calls = rng.poisson(1400, days).astype(float)
        calls[:cut] = rng.poisson(5, cut)
        expected = days - cut if cut else days
        assert abs(int(smoothing.kept_days([calls])[0]) - expected) <= 3


def test_a_missing_day_is_no_calls_not_a_nan_forecast() -> None:
    # Guards against one NaN in a history spreading through the filter into every forecast day,
    # interval and future (a review found it): it is a day without calls, as daily_history has it.
    past = history(100, seed=9)
    past.iloc[50] = np.nan
    result = forecast(past, 31)
    for band in (result.predicted, result.lower95, result.upper95, result.paths):
        assert np.all(np.isfinite(band))
