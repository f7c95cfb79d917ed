"""`timo_hub.platform.months`: UTC month arithmetic across month, year and leap-year edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from timo_hub.platform.months import (
    add_months,
    days_to_month_end,
    last_day,
    month_span,
    month_start,
    next_month,
)


def test_month_start_is_taken_in_utc() -> None:
    # 23:30 on 31 March in New York is already April in UTC.
    eastern = timezone(timedelta(hours=-4))
    assert month_start(datetime(2026, 3, 31, 23, 30, tzinfo=eastern)) == date(2026, 4, 1)
    assert month_start(date(2026, 11, 28)) == date(2026, 11, 1)


def test_add_months_crosses_years_both_ways() -> None:
    assert add_months(date(2026, 11, 28), -13) == date(2025, 10, 1)
    assert add_months(date(2026, 11, 1), 2) == date(2027, 1, 1)
    assert add_months(date(2026, 1, 15), -1) == date(2025, 12, 1)
    assert next_month(date(2026, 12, 31)) == date(2027, 1, 1)


def test_last_day_and_days_left_know_leap_years() -> None:
    assert last_day(date(2028, 2, 10)) == date(2028, 2, 29)
    assert last_day(date(2027, 2, 10)) == date(2027, 2, 28)
    assert days_to_month_end(date(2026, 4, 21)) == 10
    assert days_to_month_end(date(2026, 12, 31)) == 1


def test_month_span_is_half_open_in_utc() -> None:
    start, end = month_span(datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
