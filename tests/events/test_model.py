"""The event type and its one serialisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from events.model import ApiCallRecorded, InvalidEventError, new_event_id
from tests.support.events import make_event


def test_round_trip_is_lossless_to_the_microsecond() -> None:
    event = make_event(occurred_at=datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC))
    text = event.to_json()
    assert json.loads(text)["occurred_at"] == "2026-11-28T12:00:00.123456Z"
    assert ApiCallRecorded.parse(text) == event


def test_times_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = make_event(occurred_at=datetime(2026, 11, 28, 14, 0, tzinfo=plus_two))
    assert event.occurred_at == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("event_id"), "event_id"),
        (lambda d: d.update(status=42), "status"),
        (lambda d: d.update(occurred_at="2026-11-28T12:00:00"), "time zone"),
        (lambda d: d.update(duration_ms=-1), "duration_ms"),
        (lambda d: d.update(extra="x"), "extra"),
        (lambda d: d.update(schema_version=99), "schema_version"),
    ],
)
def test_invalid_payloads_say_why(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(make_event().to_json())
    mutate(document)
    with pytest.raises(InvalidEventError, match=reason):
        ApiCallRecorded.parse(json.dumps(document))


def test_not_json_at_all_is_invalid() -> None:
    with pytest.raises(InvalidEventError):
        ApiCallRecorded.parse("{nope")


def test_event_ids_are_uuid7_and_sort_by_time() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
