"""Synthetic but realistic usage history, for demos and benchmarks (never for real accounts).

Calls per day follow a growth trend and a weekly pattern (quiet weekends) with Poisson noise and
the odd busy day; each call gets one of the account's keys, a route, a status drawn from a
plausible mix (mostly 2xx, some 4xx, rare 5xx and 429) and a duration. Event ids come from the
seeded generator, so the same arguments produce the same events and importing them twice adds
nothing the second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from events.model import ApiCallRecorded

WEEKDAY_SHAPE = (1.15, 1.2, 1.15, 1.1, 1.0, 0.45, 0.35)  # Monday first
ROUTES = (
    ("GET", "/api/v1/account/quota", 0.40),
    ("GET", "/api/v1/usage/stats", 0.25),
    ("GET", "/api/v1/account", 0.15),
    ("GET", "/api/v1/usage/forecast", 0.10),
    ("GET", "/api/v1/auth/keys", 0.06),
    ("POST", "/api/v1/auth/keys", 0.03),
    ("DELETE", "/api/v1/auth/keys/{keyId}", 0.01),
)
STATUSES = ((200, 0.93), (304, 0.02), (404, 0.02), (422, 0.015), (429, 0.01), (500, 0.005))
BUSY_DAY_CHANCE = 0.03


@dataclass(frozen=True)
class SampleShape:
    """How much traffic, and how it grows."""

    days: int = 120
    calls_per_day: float = 300.0
    """Weekday calls at the start of the history."""
    growth: float = 0.5
    """Relative growth over the whole history (0.5: half as much again at the end)."""
    seed: int = 7


def sample_events(
    account_id: uuid.UUID, key_ids: Sequence[uuid.UUID], shape: SampleShape, now: datetime
) -> Iterator[ApiCallRecorded]:
    """Events for the `shape.days` days up to `now` (today's only up to `now`), oldest day first."""
    if not key_ids:
        raise ValueError("the account needs at least one key")
    rng = np.random.default_rng(shape.seed)
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=shape.days - 1)
    route_weights = np.array([w for *_, w in ROUTES]) / sum(w for *_, w in ROUTES)
    status_weights = np.array([w for _, w in STATUSES]) / sum(w for _, w in STATUSES)
    key_weights = np.array([0.6**i for i in range(len(key_ids))])
    key_weights /= key_weights.sum()
    for offset in range(shape.days):
        day = first + timedelta(days=offset)
        rate = shape.calls_per_day * (1 + shape.growth * offset / max(shape.days - 1, 1))
        rate *= WEEKDAY_SHAPE[day.weekday()]
        if rng.random() < BUSY_DAY_CHANCE:
            rate *= rng.uniform(2.0, 4.0)
        count = int(rng.poisson(rate))
        seconds = np.sort(rng.uniform(0, 86400, count))
        routes = rng.choice(len(ROUTES), count, p=route_weights)
        statuses = rng.choice(len(STATUSES), count, p=status_weights)
        keys = rng.choice(len(key_ids), count, p=key_weights)
        durations = rng.lognormal(np.log(12.0), 0.6, count)
        ids = rng.bytes(16 * count)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for i in range(count):
            moment = start + timedelta(seconds=float(seconds[i]))
            if moment > now:
                break
            method, endpoint, _ = ROUTES[routes[i]]
            yield ApiCallRecorded(
                event_id=uuid.UUID(bytes=ids[16 * i : 16 * (i + 1)], version=4),
                occurred_at=moment,
                account_id=account_id,
                key_id=key_ids[keys[i]],
                method=method,
                endpoint=endpoint,
                status=STATUSES[statuses[i]][0],
                duration_ms=round(float(durations[i]), 3),
                request_id=f"sample-{shape.seed}-{offset}-{i}",
            )
