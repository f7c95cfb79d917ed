"""UTC calendar months: the one place that does month arithmetic.

The quota period, event-log partitions, retention and the month's forecast projection all think
in UTC calendar months; they all ask here. Months are named by their first day (a `date`).

Platform code: imports nothing else of the product.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def month_start(moment: datetime | date) -> date:
    """The first day of the UTC month of `moment` (an aware datetime, or a date)."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC).date()
    return moment.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after (or, negative, before) `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    return add_months(day, 1)


def last_day(day: date) -> date:
    """The last day of `day`'s month."""
    return next_month(day) - timedelta(days=1)


def days_to_month_end(today: date) -> int:
    """Days from `today` to the last day of its month, both included."""
    return (last_day(today) - today).days + 1


def month_span(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC month containing the aware datetime `moment`, as `[start, end)` datetimes."""
    first = month_start(moment)
    return _midnight(first), _midnight(next_month(first))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
