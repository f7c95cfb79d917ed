"""The seasonal model, for many accounts at once: robust exponential smoothing whose parameters
each account's own backtest chooses from a grid.

Per account, on `log1p(calls)`: a level, a damped trend and a weekly season, updated day by day
by the error-correction equations of ETS(A,Ad,A) (Hyndman et al., *Forecasting with
Exponential Smoothing*, 2008, ch. 2). Each day's error is clipped at `CLIP_SCALES` times a
running scale of recent errors before it updates anything (Gelper, Fried & Croux, *Robust
forecasting with exponential and Holt-Winters smoothing*, 2010), so a one-day spike moves the
level by a bounded step while a lasting change still wins within days.

Instead of estimating the smoothing parameters by maximum likelihood per account, every account
runs every parameter set of `GRID` in one vectorized pass (accounts by parameter sets are the
columns of each array operation), recording the state before every few days of its last
`SELECTION_DAYS`. From a state, the forecast of the next 30 days is one expression, so every
origin is backtested for free: the sets are ranked by their mean absolute error over those
origins and horizons, per account, and the forecast is the mean of the best `COMBINED` (a
combination is more robust on series it was not tuned to than any single choice). A second pass
runs those sets over the whole history: its errors calibrate the account's intervals. The
forecast errors it actually made one to 30 days ahead become its own error distribution, by
horizon band, recent origins weighing more, and the futures are drawn from it (a Gaussian copula
with the share of the error that persisted across a whole origin as a common shift, so a month's
total is as uncertain as it proved to be). No per-account fitting, no global factor.

Cost: a fixed number of numpy operations per day of history, each over every account of the
batch: about 2 ms of CPU per account in batches of 200 (bench/forecast_cost.py).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erfinv, ndtr

WEEK = 7
# Smoothing parameters tried for every account: level (alpha), trend (beta, phi), season (gamma).
ALPHAS = (0.05, 0.15, 0.3, 0.5)
# Trend: (beta, phi); beta 0 is no trend. A damped trend fades over a month instead of
# compounding; phi 0.98 keeps most of a steady growth over a month.
TRENDS = ((0.0, 0.9), (0.01, 0.9), (0.04, 0.9), (0.005, 0.98))
GAMMAS = (0.03, 0.15)
GRID = np.array(
    [
        (alpha, beta, gamma, phi)
        for alpha, (beta, phi), gamma in itertools.product(ALPHAS, TRENDS, GAMMAS)
    ]
)
# The filter sees at most this many days: with the smallest alpha the level forgets a day's
# weight to under 0.1% in 140 days, and the season (gamma 0.03, one update a week) keeps a
# quarter of its start after 32 weeks.
MAX_DAYS = 252
# The first days of a history start the state (level, season); errors are scored after them.
INIT_DAYS = 2 * WEEK
# The backtest: the state before each day forecasts up to BACKTEST_HORIZON days. The parameters
# are chosen on the most recent SELECTION_DAYS origins (what the account does now); the intervals
# learn from every origin of the history (a calm month alone would make them too narrow, and a
# year holds its holidays).
SELECTION_DAYS = 112
# Origins every this many days, for the intervals and for the choice of parameters: neighbours'
# errors are nearly the same, at twice the cost.
ORIGIN_STRIDE = 2
SELECTION_STRIDE = 4
# How many of the best parameter sets the forecast averages.
COMBINED = 8
HALF_LIFE_DAYS = 112
BACKTEST_HORIZON = 30
# Fewer origins than this (a history under four weeks) and an account's errors say too little.
MIN_HISTORY_DAYS = 4 * WEEK
# Errors are clipped at this many running scales; the scale learns at SCALE_RATE per day.
CLIP_SCALES = 2.5
SCALE_RATE = 0.1
MIN_SCALE = 0.05
# Intervals: errors pooled over these horizon bands (days ahead, 1-based, inclusive).
BANDS = ((1, 7), (8, 14), (15, 30))
# Beyond the backtest's horizon the last band's errors widen with the square root of time.
MAX_SHARED = 0.8
QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)
# A flat history would otherwise give intervals of zero width.
MIN_LOG_SPREAD = 0.02
# A week whose median is this far (log scale: a factor of 10) from the last two weeks' is another
# regime (a customer going live); only the history since then is used.
LEVEL_SHIFT = float(np.log(10.0))


@dataclass(frozen=True)
class SmoothedBatch:
    """Forecasts for a batch of accounts, row `i` for the `i`-th history given."""

    kept_days: np.ndarray
    """Days of history each account's model used (after a level shift, only those since)."""
    log_quantiles: np.ndarray
    """`QUANTILES` of each day, log scale, shape `(len(QUANTILES), accounts, horizon)`."""
    paths: np.ndarray
    """Simulated futures in calls, shape `(accounts, paths, horizon)`."""
    origins: np.ndarray
    """Backtest origins per account."""
    mase: np.ndarray
    smape: np.ndarray
    total_error_pct: np.ndarray
    """Mean absolute % error of the 30-day total over origins that saw 30 days (NaN: none)."""
    log_errors: np.ndarray
    """The chosen parameters' errors, `(accounts, origins, horizon)` (NaN where unseen)."""


def forecast_batch(
    histories: Sequence[np.ndarray],
    horizon: int,
    *,
    repetitions: int,
    seed: int,
) -> SmoothedBatch:
    """Forecast `horizon` days after each history (daily calls, each at least
    `MIN_HISTORY_DAYS` long; each ends the day before its own first forecast day).

    Deterministic per account: an account's forecast depends on its history, `horizon`,
    `repetitions` and `seed`, not on which other accounts share the batch (to floating-point
    rounding, ~1e-13 relative: array reductions may sum in another order).
    """
    logs = _right_aligned(histories, MIN_HISTORY_DAYS)
    starts = _starts(logs)
    days = logs.shape[1]
    # Two passes: every parameter set over the recent origins, to rank them; then the best
    # `COMBINED` sets over every origin, for the errors the intervals learn from. The forecast
    # is the mean of theirs (log scale): a combination beats any one choice on series it was
    # not tuned to.
    trial = _filter(
        logs,
        starts,
        GRID[None, :, :],
        first_origin=max(days - SELECTION_DAYS, 0),
        stride=SELECTION_STRIDE,
    )
    best = _ranked_parameters(logs, trial)[:, :COMBINED]
    full = _filter(logs, starts, GRID[best], first_origin=0, stride=ORIGIN_STRIDE)
    horizons = np.arange(1, BACKTEST_HORIZON + 1)
    backtest_point, backtest_actual = _combined_origin_forecasts(logs, full, horizons)
    log_errors = backtest_actual - backtest_point  # (accounts, origins, H)
    level, trend, season = full.final
    ahead = np.arange(1, horizon + 1)
    slots = (days + ahead - 1) % WEEK
    log_base = (
        level[:, :, None] + _damping(full.phi, horizon) * trend[:, :, None] + season[:, :, slots]
    ).mean(axis=1)
    pools = _error_pools(log_errors, horizon)
    rngs = [_account_rng(seed, history, horizon) for history in histories]
    deviations = _draw(pools, _shared_share(log_errors), repetitions, rngs)
    ceiling = np.log1p(_growth_ceiling(logs))
    log_paths = np.minimum(log_base[:, None, :] + deviations, ceiling[:, None, None])
    log_quantiles = np.minimum(
        log_base[None, :, :] + _pool_quantiles(pools), ceiling[None, :, None]
    )
    mase, smape, total = _accuracy(logs, backtest_point, backtest_actual)
    return SmoothedBatch(
        kept_days=days - starts,
        log_quantiles=log_quantiles,
        # Whole calls, like the daily quantiles (`forecasting._from_batch`).
        paths=np.round(np.maximum(np.expm1(log_paths), 0.0)),
        origins=np.isfinite(log_errors[:, :, 0]).sum(axis=1),
        mase=mase,
        smape=smape,
        total_error_pct=total,
        log_errors=log_errors,
    )


def kept_days(histories: Sequence[np.ndarray]) -> np.ndarray:
    """How many of each history's last days are one regime: all of them (up to `MAX_DAYS`), or
    those since the last change of level (at least two weeks), see `_starts`."""
    logs = _right_aligned(histories, min_days=1)
    return logs.shape[1] - _starts(logs)


def _right_aligned(histories: Sequence[np.ndarray], min_days: int) -> np.ndarray:
    """`log1p` of the histories' last `MAX_DAYS` days, right-aligned, NaN before each start."""
    width = min(max(h.size for h in histories), MAX_DAYS)
    logs = np.full((len(histories), width), np.nan)
    for i, history in enumerate(histories):
        tail = np.asarray(history[-width:], dtype=float)
        if tail.size < min_days:
            raise ValueError(f"every history needs at least {min_days} days")
        # A missing day (NaN) is no calls, as `daily_history` fills it; never a NaN forecast.
        logs[i, width - tail.size :] = np.log1p(np.maximum(np.nan_to_num(tail, nan=0.0), 0.0))
    return logs


def _starts(logs: np.ndarray) -> np.ndarray:
    """Each account's first day of history, after the last change of level if there was one.

    Walking back from two weeks before the end, the first week whose median is over
    `LEVEL_SHIFT` from the last two weeks' median marks another regime; at least two weeks are
    always kept.
    """
    days = logs.shape[1]
    starts = np.argmax(np.isfinite(logs), axis=1)
    if days < 4 * WEEK:
        return starts
    recent = np.median(logs[:, -2 * WEEK :], axis=1)
    weekly = np.median(sliding_window_view(logs, WEEK, axis=1), axis=2)  # ends at day i + 6
    ends = np.arange(WEEK - 1, days)
    # Only weeks that end before the last two weeks' start can mark a shift.
    away = np.abs(weekly - recent[:, None]) > LEVEL_SHIFT
    away &= (ends <= days - 2 * WEEK - 1)[None, :]
    away &= np.isfinite(weekly)
    # The last such week, by the day it ends on.
    last = np.where(away.any(axis=1), days - 1 - np.argmax(away[:, ::-1], axis=1), -1)
    return np.maximum(starts, last + 1)


@dataclass(frozen=True)
class _States:
    """The smoothing state before each backtest origin, and after the last day."""

    origin_days: np.ndarray
    """The day index of each origin (evenly spaced, the last one on the last day)."""
    levels: np.ndarray
    """`(accounts[, grid], origins)`; NaN before an account's scoring starts."""
    trends: np.ndarray
    seasons: np.ndarray
    """`(accounts[, grid], origins, 7)`."""
    final: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Level, trend and season after the last day."""
    phi: np.ndarray
    """The trend's damping, `(accounts or 1[, grid])`."""


def _damping(phi: np.ndarray, horizon: int) -> np.ndarray:
    """How much of today's trend each day ahead adds up to: phi + phi^2 + ... + phi^h, shape
    `(*phi.shape, horizon)`."""
    return np.cumsum(phi[..., None] ** np.arange(1, horizon + 1), axis=-1)


def _filter(
    logs: np.ndarray,
    starts: np.ndarray,
    parameters: np.ndarray,
    *,
    first_origin: int,
    stride: int,
) -> _States:
    """Run parameter sets over every history, recording the state at every `stride`-th day
    from `first_origin` on, ending at the last day; `parameters` is
    `(1 or accounts, sets, 4)` of (alpha, beta, gamma, phi)."""
    accounts, days = logs.shape
    grid = parameters.shape[1]
    alpha, beta, gamma, phi = (parameters[:, :, k] for k in range(4))
    level, season, scale = _initial_state(logs, starts)
    level = np.repeat(level[:, None], grid, axis=1)
    trend = np.zeros((accounts, grid))
    season = np.repeat(season[:, None, :], grid, axis=1)
    scale = np.repeat(scale[:, None], grid, axis=1)
    origin_days = np.arange(days - 1, first_origin - 1, -stride)[::-1]
    origin_of = {int(day): i for i, day in enumerate(origin_days)}
    origins = origin_days.size
    levels = np.full((accounts, grid, origins), np.nan)
    trends = np.zeros((accounts, grid, origins))
    seasons = np.zeros((accounts, grid, origins, WEEK))
    scored_from = starts + INIT_DAYS
    for t in range(int(scored_from.min()), days):
        active = t >= scored_from
        if (o := origin_of.get(t)) is not None:
            # Origins before an account's scoring starts hold no state of its own: left NaN.
            levels[active, :, o] = level[active]
            trends[:, :, o] = trend
            seasons[:, :, o] = season
        on = active[:, None]
        slot = t % WEEK
        error = logs[:, t][:, None] - (level + phi * trend + season[:, :, slot])
        bound = CLIP_SCALES * scale
        clipped = np.where(on, np.clip(error, -bound, bound), 0.0)
        level = level + np.where(on, phi * trend, 0.0) + alpha * clipped
        trend = np.where(on, phi * trend, trend) + beta * clipped
        season[:, :, slot] += gamma * clipped
        # The scale follows clipped errors (1.25 turns a mean absolute error into a deviation).
        scale = np.where(
            on,
            np.maximum((1 - SCALE_RATE) * scale + SCALE_RATE * 1.25 * np.abs(clipped), MIN_SCALE),
            scale,
        )
    phis = np.broadcast_to(phi, (accounts, grid))
    return _States(origin_days, levels, trends, seasons, (level, trend, season), phis)


def _combined_origin_forecasts(
    logs: np.ndarray, states: _States, horizons: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The mean (over the parameter sets of `states`) log forecast each origin made `horizons`
    days ahead, and the log actuals they met (NaN where not yet known), `(accounts, origins, h)`.

    The mean of level + damping * trend + season is the mean level, plus the mean damped trend,
    plus the mean season: averaged first, the arrays stay one parameter set wide.
    """
    accounts = logs.shape[0]
    target = states.origin_days[:, None] + horizons[None, :] - 1  # (origins, h)
    damping = _damping(states.phi, int(horizons.max()))[..., horizons - 1]  # (accounts, sets, h)
    level = np.mean(states.levels, axis=1)
    trend = np.einsum("ash,aso->aoh", damping, states.trends) / states.phi.shape[1]
    season = np.mean(states.seasons, axis=1)  # (accounts, origins, 7)
    index = np.broadcast_to(target % WEEK, (accounts, *target.shape))
    point = level[..., None] + trend + np.take_along_axis(season, index, axis=-1)
    padded = np.concatenate([logs, np.full((accounts, horizons.max()), np.nan)], axis=1)
    return point, padded[:, target]


def _ranked_parameters(logs: np.ndarray, states: _States) -> np.ndarray:
    """Per account, the parameter sets from best to worst by the mean absolute (log) error of
    their forecasts from every origin, 1 to `BACKTEST_HORIZON` days ahead."""
    accounts, _days = logs.shape
    origin_days = states.origin_days
    # The season as seen from each origin: rolled[..., o, k] is the slot k days after origin o.
    rolled_slots = (origin_days[:, None] + np.arange(WEEK)[None, :]) % WEEK
    # Single precision: the choice compares mean errors, it needs no more.
    seasons = states.seasons.astype(np.float32)
    rolled = np.take_along_axis(seasons, np.broadcast_to(rolled_slots, seasons.shape), axis=-1)
    levels = states.levels.astype(np.float32)
    trends = states.trends.astype(np.float32)
    padded = np.concatenate(
        [logs, np.full((accounts, BACKTEST_HORIZON), np.nan)], axis=1, dtype=np.float32
    )
    total = np.zeros(levels.shape[:2])
    seen = np.zeros(levels.shape[:2])
    damping = _damping(states.phi, BACKTEST_HORIZON).astype(np.float32)[..., None, :]
    # One horizon at a time: all at once would be accounts by grid by origins by 30 floats.
    for h in range(1, BACKTEST_HORIZON + 1):
        actual = padded[:, origin_days + h - 1][:, None, :]
        point = levels + damping[..., h - 1] * trends + rolled[..., (h - 1) % WEEK]
        error = np.abs(actual - point)
        valid = np.isfinite(error)
        total += np.where(valid, error, 0.0).sum(axis=2)
        seen += valid.sum(axis=2)
    return np.argsort(total / np.maximum(seen, 1), axis=1, kind="stable")


def _initial_state(
    logs: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level, season and error scale from each account's first `INIT_DAYS` days."""
    accounts = logs.shape[0]
    window = starts[:, None] + np.arange(INIT_DAYS)[None, :]
    values = np.take_along_axis(logs, window, axis=1)
    level = values.mean(axis=1)
    season = np.zeros((accounts, WEEK))
    slots = window % WEEK
    for k in range(WEEK):
        on_slot = slots == k
        season[:, k] = (values * on_slot).sum(axis=1) / on_slot.sum(axis=1) - level
    residual = values - level[:, None] - np.take_along_axis(season, slots, axis=1)
    scale = np.maximum(1.25 * np.mean(np.abs(residual), axis=1), MIN_SCALE)
    return level, season, scale


@dataclass(frozen=True)
class _Pools:
    """Each account's error distribution by horizon band, as a table of quantiles."""

    table: np.ndarray
    """`(accounts, bands, LEVELS)`: the error at each of `LEVELS` evenly spaced probabilities
    from 0 to 1 (NaN where the account has no error in that band)."""
    band_of: np.ndarray
    """The band of each day ahead."""
    widening: np.ndarray
    """Per day ahead: 1 within the backtest's horizon, the square root of time beyond it."""


# The error distributions are kept as this many quantiles (0%, 1%, ..., 100%).
LEVELS = 101


def _error_pools(log_errors: np.ndarray, horizon: int) -> _Pools:
    """Each account's errors by `BANDS`, recent origins weighing more (half as much every
    `HALF_LIFE_DAYS`), for a forecast of `horizon` days."""
    accounts, origins = log_errors.shape[:2]
    age = origins - 1 - np.arange(origins)
    origin_weight = 0.5 ** (age * ORIGIN_STRIDE / HALF_LIFE_DAYS)
    levels = np.linspace(0.0, 1.0, LEVELS)
    table = np.full((accounts, len(BANDS), LEVELS), np.nan)
    for band, (first, last) in enumerate(BANDS):
        errors = log_errors[:, :, first - 1 : last]
        weights = np.broadcast_to(origin_weight[None, :, None], errors.shape)
        errors = errors.reshape(accounts, -1)
        weights = np.where(np.isfinite(errors), weights.reshape(accounts, -1), 0.0)
        order = np.argsort(errors, axis=1)  # NaN last, with weight 0
        errors = np.take_along_axis(errors, order, axis=1)
        weights = np.take_along_axis(weights, order, axis=1)
        total = weights.sum(axis=1, keepdims=True)
        # Each error stands at the middle of its weight (the weighted analogue of (i + 0.5) / n).
        position = (np.cumsum(weights, axis=1) - weights / 2) / np.where(total > 0, total, 1.0)
        for row in np.flatnonzero(total[:, 0] > 0):
            seen = weights[row] > 0
            table[row, band] = np.interp(levels, position[row, seen], errors[row, seen])
    # Centred on the forecast: the median error is not added back as a bias correction. The
    # backtest's median error is that of states learned before each origin, mostly about a level
    # the smoothing has since caught up with; adding it (from all origins, or the last 8 or 16
    # weeks') made every measure worse on the benchmark (docs/decisions.md).
    table -= table[:, :, (LEVELS - 1) // 2][..., None]
    ahead = np.arange(1, horizon + 1)
    last_day = BANDS[-1][1]
    band_of = np.searchsorted([last for _, last in BANDS], np.minimum(ahead, last_day))
    widening = np.sqrt(np.maximum(ahead / last_day, 1.0))
    return _Pools(table, band_of, widening)


def _pool_quantiles(pools: _Pools) -> np.ndarray:
    """`QUANTILES` of each day's errors, shape `(len(QUANTILES), accounts, horizon)`."""
    levels = np.array(QUANTILES)
    at = levels * (LEVELS - 1)
    below = np.floor(at).astype(np.int64)
    above = np.minimum(below + 1, LEVELS - 1)
    weight = (at - below)[:, None, None]
    by_band = (1 - weight) * np.moveaxis(pools.table[:, :, below], 2, 0) + weight * np.moveaxis(
        pools.table[:, :, above], 2, 0
    )  # (quantiles, accounts, bands)
    quantiles = by_band[:, :, pools.band_of] * pools.widening[None, None, :]
    # No narrower than a normal error of MIN_LOG_SPREAD (no errors at all: that alone).
    floor = (np.sqrt(2) * erfinv(2 * levels - 1) * MIN_LOG_SPREAD)[:, None, None]
    quantiles = np.where(np.isfinite(quantiles), quantiles, floor)
    return np.where(
        (levels < 0.5)[:, None, None],
        np.minimum(quantiles, floor),
        np.where((levels > 0.5)[:, None, None], np.maximum(quantiles, floor), quantiles),
    )


def _shared_share(log_errors: np.ndarray) -> np.ndarray:
    """Per account, the share of error variance common to a whole origin (0 to `MAX_SHARED`)."""
    valid = np.isfinite(log_errors)
    errors = np.where(valid, log_errors, 0.0)
    seen = valid.sum(axis=2)
    per_origin = errors.sum(axis=2) / np.maximum(seen, 1)
    origins = np.maximum((seen > 0).sum(axis=1), 1)
    overall = (errors**2).sum(axis=(1, 2)) / np.maximum(seen.sum(axis=1), 1)
    shared = np.divide(
        (per_origin**2).sum(axis=1) / origins,
        overall,
        out=np.zeros_like(overall),
        where=overall > 0,
    )
    return np.clip(shared, 0.0, MAX_SHARED)


def _account_rng(seed: int, history: np.ndarray, horizon: int) -> np.random.Generator:
    digest = zlib.crc32(np.ascontiguousarray(history, dtype=np.float64).tobytes())
    return np.random.default_rng([seed, digest, horizon])


def _draw(
    pools: _Pools, shared: np.ndarray, repetitions: int, rngs: Sequence[np.random.Generator]
) -> np.ndarray:
    """Deviations `(accounts, repetitions, horizon)`: each day's from its band's distribution,
    days tied by a common shift of weight `shared` (a Gaussian copula)."""
    accounts, bands, _ = pools.table.shape
    horizon = pools.band_of.size
    # Single precision: ranks need no more, and the draw is the largest array of the batch.
    weight = shared[:, None, None].astype(np.float32)
    normals = np.stack(
        [rng.standard_normal((repetitions, horizon + 1), dtype=np.float32) for rng in rngs]
    )
    ranks = ndtr(np.sqrt(weight) * normals[:, :, :1] + np.sqrt(1 - weight) * normals[:, :, 1:])
    index = np.minimum((ranks * (LEVELS - 1) + 0.5).astype(np.int64), LEVELS - 1)
    # One flat index into the tables: much cheaper than indexing three axes at once.
    row = (np.arange(accounts)[:, None] * bands + pools.band_of[None, :]) * LEVELS
    drawn = np.take(pools.table, row[:, None, :] + index)
    return np.where(np.isfinite(drawn), drawn, 0.0) * pools.widening[None, None, :]


def _growth_ceiling(logs: np.ndarray) -> np.ndarray:
    """Per account, the most calls a day any future may have: three times the busiest of the
    last eight weeks (a damped trend cannot get there, a drawn error could)."""
    recent = np.expm1(logs[:, -8 * WEEK :])
    return 3.0 * np.maximum(np.nanmax(recent, axis=1), 1.0)


def _accuracy(
    logs: np.ndarray, log_point: np.ndarray, log_actual: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MASE, sMAPE and the 30-day total's error of the chosen parameters' backtest, per account
    (NaN where nothing could be scored)."""
    valid = np.isfinite(log_point) & np.isfinite(log_actual)
    point = np.where(valid, np.expm1(log_point), 0.0)
    actual = np.where(valid, np.expm1(log_actual), 0.0)
    counts = np.expm1(logs)
    with np.errstate(all="ignore"):
        scale = np.nanmean(np.abs(counts[:, WEEK:] - counts[:, :-WEEK]), axis=1)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        seen = np.maximum(valid.sum(axis=(1, 2)), 1)
        absolute = np.abs(actual - point)
        mase = absolute.sum(axis=(1, 2)) / seen / scale
        denominator = actual + point
        terms = np.divide(
            2 * absolute, denominator, out=np.zeros_like(absolute), where=denominator > 0
        )
        smape = terms.sum(axis=(1, 2)) / seen * 100
        complete = valid.all(axis=2)
        totals_actual = actual.sum(axis=2)
        totals_point = point.sum(axis=2)
        ok = complete & (totals_actual > 0)
        errors = np.where(
            ok, np.abs(totals_point - totals_actual) / np.where(ok, totals_actual, 1), 0.0
        )
        total = np.where(
            ok.any(axis=1), errors.sum(axis=1) / np.maximum(ok.sum(axis=1), 1) * 100, np.nan
        )
    return mase, smape, total
