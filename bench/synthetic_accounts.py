"""Synthetic but realistic daily call histories, for benchmarks of the nightly forecast.

Each account mixes what real API usage shows: a level from a few calls a day to tens of
thousands (log-normal), a weekly shape (business days busier, by a random factor, or none), a
trend (growth or decline of up to a few percent a week), day-to-day noise (log-normal on the
rate, then Poisson), one-day spikes, outages (days of zeros), a change of level (a customer going
live, or moving traffic elsewhere) and a share of sparse accounts with a handful of calls on some
days only. Histories run from two weeks (new accounts) to a year.
"""

from __future__ import annotations

from datetime import date

import numpy as np


def synthetic_accounts(count: int, today: date, *, seed: int) -> list[np.ndarray]:
    """`count` histories of calls per day, each ending the day before `today` (oldest first)."""
    rng = np.random.default_rng(seed)
    return [_account(rng, today) for _ in range(count)]


def _account(rng: np.random.Generator, today: date) -> np.ndarray:
    kind = rng.random()
    if kind < 0.05:
        days = int(rng.integers(14, 28))
    elif kind < 0.2:
        days = int(rng.integers(28, 90))
    elif kind < 0.5:
        days = int(rng.integers(90, 180))
    else:
        days = int(rng.integers(180, 366))
    t = np.arange(days)
    # The weekday of each day: the last day is yesterday.
    weekday = (today.toordinal() - days + t) % 7
    log_rate = np.full(days, rng.normal(4.5, 2.0))
    if rng.random() < 0.65:
        weekend = rng.uniform(0.15, 0.9)
        shape = np.where(weekday >= 5, np.log(weekend), 0.0) + rng.normal(0, 0.05, 7)[weekday]
        log_rate += shape
    log_rate += rng.normal(0, 0.004) * t
    if rng.random() < 0.12:
        step = int(rng.integers(7, days))
        log_rate[step:] += np.log(rng.choice([0.1, 0.3, 3.0, 10.0, 30.0]))
    noise = rng.uniform(0.05, 0.45)
    rate = np.exp(log_rate + rng.normal(0, noise, days))
    if rng.random() < 0.1:
        # Sparse: a handful of calls on some days.
        rate = np.where(rng.random(days) < rng.uniform(0.1, 0.6), rng.uniform(1, 8), 0.0)
    calls = rng.poisson(np.minimum(rate, 5e6)).astype(float)
    if rng.random() < 0.3:
        spikes = rng.integers(0, days, int(rng.integers(1, 4)))
        calls[spikes] *= rng.uniform(3, 20, spikes.size)
    if rng.random() < 0.1:
        outage = int(rng.integers(0, days))
        calls[outage : outage + int(rng.integers(1, 5))] = 0
    return np.round(calls)
