"""`analytics.stats`: hand-computed sums over hand-built `usage_daily` rows."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from analytics.stats import KeyLabel, UsageStats, UsageSums, period_bounds, usage_stats

TODAY = date(2026, 3, 10)
KEY_A, KEY_B, KEY_GONE = "key-a", "key-b", "key-gone"
LABELS = {KEY_A: KeyLabel("ci", "timo_live_aaaa"), KEY_B: KeyLabel("prod", "timo_live_bbbb")}


def rows(*entries: tuple) -> pd.DataFrame:
    """(day, key, endpoint, status, calls, duration_ms_sum) tuples as a frame."""
    return pd.DataFrame(
        entries, columns=["day", "key_id", "endpoint", "status", "calls", "duration_ms_sum"]
    )


def stats_for(frame: pd.DataFrame, period: str, keys: dict) -> UsageStats:
    """Raw rows summed in pandas (the database sums them the same way), then the statistics."""
    sums = UsageSums.from_rows(frame, period=period, today=TODAY)
    return usage_stats(sums, period=period, today=TODAY, keys=keys)


SAMPLE = rows(
    # The 7-day period is 2026-03-04..2026-03-10; the one before is 02-25..03-03.
    (date(2026, 3, 4), KEY_A, "/account", 200, 10, 50.0),
    (date(2026, 3, 4), KEY_A, "/account", 304, 2, 2.0),
    (date(2026, 3, 4), KEY_B, "/auth/keys", 404, 3, 3.0),
    # 03-05 and 03-06 have no rows at all: they must appear as zeros.
    (date(2026, 3, 7), KEY_B, "/account/quota", 429, 5, 5.0),
    (date(2026, 3, 7), KEY_B, "/account/quota", 200, 20, 40.0),
    (date(2026, 3, 8), KEY_GONE, "/auth/keys/{keyId}", 500, 1, 100.0),
    (date(2026, 3, 8), KEY_A, "/auth/keys", 422, 4, 8.0),
    (date(2026, 3, 10), KEY_A, "/account", 200, 7, 7.0),
    # Before the period: only the comparison sees these.
    (date(2026, 3, 3), KEY_A, "/account", 200, 40, 40.0),
    (date(2026, 2, 25), KEY_A, "/account", 429, 8, 8.0),
    # Before the previous period and after today: ignored.
    (date(2026, 2, 24), KEY_A, "/account", 200, 1000, 1.0),
    (date(2026, 3, 11), KEY_A, "/account", 200, 1000, 1.0),
)


def test_totals_and_status_classes_match_hand_computed_sums() -> None:
    stats = stats_for(SAMPLE, "7d", LABELS)
    assert (stats.start, stats.end) == (date(2026, 3, 4), TODAY)
    assert stats.total_calls == 10 + 2 + 3 + 5 + 20 + 1 + 4 + 7 == 52
    assert stats.successful == 10 + 2 + 20 + 7
    assert stats.client_errors == 3 + 4  # 404 and 422, not the 429s
    assert stats.server_errors == 1
    assert stats.rejected == 5
    assert stats.successful + stats.client_errors + stats.server_errors + stats.rejected == 52
    # Charged: everything but refusals (429 here) and our own failures (the 5xx).
    assert stats.charged == 52 - 5 - 1
    assert stats.average_duration_ms == pytest.approx((50 + 2 + 3 + 5 + 40 + 100 + 8 + 7) / 52)


def test_daily_series_is_zero_filled_and_complete() -> None:
    stats = stats_for(SAMPLE, "7d", LABELS)
    assert [d.day for d in stats.daily] == [date(2026, 3, day) for day in range(4, 11)]
    by_day = {d.day.day: (d.calls, d.errors, d.rejected) for d in stats.daily}
    assert by_day == {
        4: (15, 3, 0),
        5: (0, 0, 0),
        6: (0, 0, 0),
        7: (25, 0, 5),
        8: (5, 5, 0),
        9: (0, 0, 0),
        10: (7, 0, 0),
    }
    assert stats.average_per_day == pytest.approx(52 / 7)
    assert stats.peak_day is not None
    assert (stats.peak_day.day, stats.peak_day.calls) == (date(2026, 3, 7), 25)


def test_breakdowns_by_endpoint_and_key_busiest_first() -> None:
    stats = stats_for(SAMPLE, "7d", LABELS)
    assert [(e.endpoint, e.calls) for e in stats.by_endpoint] == [
        ("/account/quota", 25),
        ("/account", 19),
        ("/auth/keys", 7),
        ("/auth/keys/{keyId}", 1),
    ]
    assert [(k.key_id, k.name, k.prefix, k.calls) for k in stats.by_key] == [
        (KEY_B, "prod", "timo_live_bbbb", 28),
        (KEY_A, "ci", "timo_live_aaaa", 23),
        (KEY_GONE, None, None, 1),
    ]


def test_change_against_previous_period() -> None:
    stats = stats_for(SAMPLE, "7d", LABELS)
    # Complete days only: 03-04..03-09 (52 - 7 made today) against 02-25..03-02 (8; the 40 on
    # 03-03 line up with today, which is not over).
    assert stats.change_vs_previous_period == pytest.approx((45 - 8) / 8 * 100)


def test_empty_account() -> None:
    stats = stats_for(rows(), "30d", {})
    assert stats.total_calls == 0
    assert len(stats.daily) == 30
    assert all(d.calls == 0 for d in stats.daily)
    assert stats.peak_day is None
    assert stats.average_duration_ms is None
    assert stats.change_vs_previous_period is None
    assert stats.by_endpoint == [] and stats.by_key == []


def test_no_previous_calls_means_no_change() -> None:
    only_now = rows((TODAY, KEY_A, "/account", 200, 3, 3.0))
    assert stats_for(only_now, "7d", LABELS).change_vs_previous_period is None


@pytest.mark.parametrize(("period", "days"), [("7d", 7), ("30d", 30), ("90d", 90)])
def test_period_bounds_end_today(period: str, days: int) -> None:
    start, end = period_bounds(period, TODAY)
    assert end == TODAY
    assert (end - start).days == days - 1
