"""`analytics.history`: the daily series models see."""

from __future__ import annotations

from datetime import date

from analytics.history import daily_history


def test_zero_fills_gaps_and_drops_days_before_the_first_call() -> None:
    calls = {date(2026, 1, 5): 4, date(2026, 1, 8): 2, date(2025, 12, 1): 0}
    history = daily_history(calls, last_day=date(2026, 1, 10))
    assert [d.date() for d in history.index] == [date(2026, 1, day) for day in range(5, 11)]
    assert history.tolist() == [4, 0, 0, 2, 0, 0]


def test_partial_creation_day_is_dropped_only_when_it_is_the_first() -> None:
    calls = {date(2026, 1, 5): 1, date(2026, 1, 6): 50, date(2026, 1, 7): 48}
    assert daily_history(
        calls, last_day=date(2026, 1, 7), partial_day=date(2026, 1, 5)
    ).tolist() == [50, 48]
    # Imported history before the account was created is not partial.
    assert daily_history(
        calls, last_day=date(2026, 1, 7), partial_day=date(2026, 1, 6)
    ).tolist() == [1, 50, 48]


def test_later_days_are_ignored_and_history_is_capped() -> None:
    calls = {date(2026, 1, day): day for day in range(1, 31)}
    history = daily_history(calls, last_day=date(2026, 1, 20), max_days=7)
    assert history.tolist() == list(range(14, 21))


def test_no_calls_is_an_empty_history() -> None:
    assert daily_history({}, last_day=date(2026, 1, 1)).empty
    assert daily_history({date(2026, 1, 1): 0}, last_day=date(2026, 1, 1)).empty
    assert daily_history(
        {date(2026, 1, 1): 5}, last_day=date(2026, 1, 1), partial_day=date(2026, 1, 1)
    ).empty
