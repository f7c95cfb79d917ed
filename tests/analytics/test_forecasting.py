"""`analytics.forecasting`: invariants, recovery of a known pattern, short and empty histories."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.forecast_models import without_spikes
from analytics.forecasting import NOTE_NO_HISTORY, NOTE_SHORT_HISTORY, calibrated, forecast

WEEKLY = np.array([1.25, 1.15, 1.1, 1.05, 1.0, 0.45, 0.35])  # Monday first


def synthetic(
    days: int,
    *,
    start: date = date(2025, 1, 6),
    base: float = 400.0,
    slope: float = 1.0,
    seed: int = 0,
) -> pd.Series:
    """Poisson counts with a linear trend and a weekly pattern (`start` is a Monday)."""
    index = pd.date_range(start, periods=days, freq="D")
    rate = (base + slope * np.arange(days)) * WEEKLY[index.dayofweek]
    return pd.Series(np.random.default_rng(seed).poisson(rate).astype(float), index=index)


def truth(history: pd.Series, horizon: int, base: float = 400.0, slope: float = 1.0) -> np.ndarray:
    index = pd.date_range(history.index[-1] + pd.Timedelta(days=1), periods=horizon, freq="D")
    t = np.arange(len(history), len(history) + horizon)
    return (base + slope * t) * WEEKLY[index.dayofweek]


def assert_well_formed(result, horizon: int, first: date) -> None:
    assert result.horizon == horizon
    assert result.dates() == [first + timedelta(days=i) for i in range(horizon)]
    for band in (result.lower95, result.lower80, result.predicted, result.upper80, result.upper95):
        assert band.shape == (horizon,)
        assert np.all(np.isfinite(band)) and np.all(band >= 0)
    assert np.all(result.lower95 <= result.lower80)
    assert np.all(result.lower80 <= result.predicted)
    assert np.all(result.predicted <= result.upper80)
    assert np.all(result.upper80 <= result.upper95)
    assert np.all(result.paths >= 0)


@pytest.mark.parametrize("model", ["auto", "linear", "seasonal"])
@pytest.mark.parametrize("days", [15, 40, 200])
def test_every_model_gives_well_formed_forecasts(model: str, days: int) -> None:
    history = synthetic(days)
    result = forecast(history, 45, model)
    assert_well_formed(result, 45, history.index[-1].date() + timedelta(days=1))
    assert result.history_days == days
    if model != "auto":
        assert result.model == model


@pytest.mark.parametrize("model", ["linear", "seasonal"])
def test_recovers_a_known_trend_and_weekly_pattern(model: str) -> None:
    history = synthetic(180)
    result = forecast(history, 28, model)
    expected = truth(history, 28)
    # Within 6% on every day, and the weekly shape: weekends well below weekdays.
    assert np.all(np.abs(result.predicted / expected - 1) < 0.06)
    weekday = pd.date_range(result.first_date, periods=28, freq="D").dayofweek
    assert result.predicted[weekday == 6].mean() < 0.4 * result.predicted[weekday == 0].mean()
    # The intervals mean something: most true rates fall inside the 80% band.
    inside = (result.lower80 <= expected) & (expected <= result.upper80)
    assert inside.mean() > 0.8


def test_auto_reports_its_backtest_accuracy() -> None:
    result = forecast(synthetic(120), 30)
    assert result.model in ("linear", "seasonal")
    assert result.accuracy is not None
    assert result.accuracy.horizon_days == 30 and result.accuracy.origins >= 1
    assert 0 < result.accuracy.mase < 1.5
    assert result.accuracy.total_error_pct is not None and result.accuracy.total_error_pct < 10
    assert result.note is None


def test_no_history_forecasts_zeros_with_a_note() -> None:
    empty = pd.Series([], index=pd.DatetimeIndex([], freq="D"), dtype=float)
    result = forecast(empty, 10, first_date=date(2026, 5, 1))
    assert result.model == "none"
    assert result.note == NOTE_NO_HISTORY
    assert_well_formed(result, 10, date(2026, 5, 1))
    assert not result.predicted.any() and not result.upper95.any()


@pytest.mark.parametrize("days", [1, 5, 13])
def test_short_history_uses_a_level_with_wide_intervals(days: int) -> None:
    history = synthetic(days)
    result = forecast(history, 30, "seasonal")
    assert result.model == "mean"
    assert result.note == NOTE_SHORT_HISTORY
    assert result.accuracy is None
    assert_well_formed(result, 30, history.index[-1].date() + timedelta(days=1))
    # Wide: the 95% band spans at least a factor of two around the level.
    assert np.all(result.upper95 >= 2 * result.lower95)
    level = np.median(history)
    assert 0.5 * level < result.predicted[0] < 2 * level


def test_a_spike_in_history_does_not_blow_up_the_month() -> None:
    history = synthetic(120)
    spiked = history.copy()
    spiked.iloc[-10] *= 40  # one viral day, ten days ago
    calm, spiky = forecast(history, 30), forecast(spiked, 30)
    calm_total = np.median(calm.paths.sum(axis=1))
    spiky_total = np.median(spiky.paths.sum(axis=1))
    assert spiky_total < 1.15 * calm_total
    assert spiky_total > 0.85 * calm_total


def test_without_spikes_replaces_only_the_outlier() -> None:
    logs = np.log1p(synthetic(63).to_numpy())
    spiked = logs.copy()
    spiked[30] += 3
    cleaned = without_spikes(spiked)
    assert abs(cleaned[30] - logs[30]) < 0.2
    assert np.count_nonzero(cleaned != spiked) <= 2


def test_flat_and_sparse_histories_still_forecast() -> None:
    index = pd.date_range("2026-01-01", periods=60, freq="D")
    flat = pd.Series(10.0, index=index)
    sparse = pd.Series(np.where(np.arange(60) % 9 == 0, 3.0, 0.0), index=index)
    for history in (flat, sparse):
        result = forecast(history, 20)
        assert_well_formed(result, 20, date(2026, 3, 2))
    assert forecast(flat, 7).predicted == pytest.approx(np.full(7, 10.0), rel=0.05)


def test_deterministic_for_the_same_inputs() -> None:
    history = synthetic(60)
    a, b = forecast(history, 14), forecast(history, 14)
    assert np.array_equal(a.paths, b.paths)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        forecast(synthetic(30), 0)
    with pytest.raises(ValueError):
        forecast(synthetic(30), 7, "prophet")


def test_persistent_past_errors_widen_totals_but_not_days() -> None:
    rng = np.random.default_rng(3)
    paths = np.exp(rng.normal(np.log(100), 0.1, size=(4000, 30)))
    noise = rng.normal(0, 0.1, size=(5, 30))
    independent = noise
    persistent = noise * 0.3 + rng.normal(0, 0.1, size=(5, 1)) * np.ones((1, 30))
    spread = {}
    for name, errors in (("independent", independent), ("persistent", persistent)):
        result = calibrated(paths, errors, np.random.default_rng(4))
        days = np.quantile(result, [0.1, 0.9], axis=0)
        totals = np.quantile(result.sum(axis=1), [0.1, 0.9])
        spread[name] = (float(np.mean(days[1] / days[0])), float(totals[1] / totals[0]))
    # Each day's 80% band is about as wide either way; the 30-day total's is much wider.
    assert spread["persistent"][0] == pytest.approx(spread["independent"][0], rel=0.25)
    # (The total's 80% band is 1.08x wide with independent errors, 1.25x with persistent ones.)
    assert spread["persistent"][1] - 1 > 2.5 * (spread["independent"][1] - 1)


def test_a_step_up_is_a_new_level_not_an_exponential_trend() -> None:
    index = pd.date_range("2026-01-05", periods=42, freq="D")
    rng = np.random.default_rng(5)
    calls = np.concatenate([rng.poisson(5, 21), rng.poisson(1400, 21)]).astype(float)
    result = forecast(pd.Series(calls, index=index), 30)
    assert result.note is not None and "changed level" in result.note
    assert 14 <= result.history_days <= 21  # the step and what follows it
    month = np.median(result.paths.sum(axis=1))
    assert 0.8 * 1400 * 30 < month < 1.25 * 1400 * 30


def test_one_huge_day_does_not_make_the_upper_bounds_astronomical() -> None:
    index = pd.date_range("2026-01-05", periods=51, freq="D")
    calls = np.random.default_rng(6).poisson(20, 51).astype(float)
    calls[45] = 20_000
    for model in ("auto", "linear", "seasonal"):
        result = forecast(pd.Series(calls, index=index), 30, model)
        assert np.quantile(result.paths.sum(axis=1), 0.9) < 3 * 20_000 * 30, model
        assert np.all(result.upper95 <= 3 * 20_000)
        assert np.median(result.predicted) < 60, model


def test_spikes_in_a_mostly_empty_history_are_removed() -> None:
    logs = np.zeros(60)
    logs[40] = np.log1p(5000)
    assert without_spikes(logs)[40] == 0.0
    sparse = np.where(np.arange(60) % 9 == 0, np.log1p(3), 0.0)
    assert np.array_equal(without_spikes(sparse), sparse)  # small regular calls are kept
