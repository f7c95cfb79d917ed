"""The UTC-month period arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from timo_hub.quota.period import PeriodClock, period_containing

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(moments)
def test_a_period_is_the_calendar_month_around_the_moment(moment: datetime) -> None:
    period = period_containing(moment)
    assert period.start <= moment < period.end
    assert period.start.day == 1 and period.end.day == 1
    assert period.start.time() == period.end.time() == datetime.min.time()
    assert 28 <= (period.end - period.start).days <= 31


def test_december_rolls_into_january() -> None:
    period = period_containing(datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert period.label == "2026-12"
    assert period.end == datetime(2027, 1, 1, tzinfo=UTC)
    assert period.reset_epoch == 1798761600


def test_retry_after_rounds_up_and_is_at_least_one_second() -> None:
    period = period_containing(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    end = period.end.timestamp()
    assert period.seconds_until_reset(end - 0.1) == 1
    assert period.seconds_until_reset(end - 1.5) == 2
    assert period.seconds_until_reset(end - 86400) == 86400


@given(st.lists(moments, min_size=1, max_size=20))
def test_the_cached_clock_agrees_with_the_plain_computation(instants: list[datetime]) -> None:
    clock = PeriodClock()
    for moment in instants:
        assert clock.current(moment.timestamp()) == period_containing(moment)
