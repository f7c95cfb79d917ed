"""The event type and its one serialisation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.model import (
    ApiCallRecorded,
    InvalidEventError,
    new_event_id,
    new_event_id_text,
    serialise_trusted,
)
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


def test_event_ids_as_text_are_canonical_uuid7_and_sort_by_time() -> None:
    # The request path writes ids it never held as `uuid.UUID`: they must read back as the same
    # canonical text the model writes.
    texts = [new_event_id_text() for _ in range(1000)]
    parsed = [uuid.UUID(text) for text in texts]
    assert [str(i) for i in parsed] == texts
    assert all(i.version == 7 for i in parsed)
    assert parsed == sorted(parsed)


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(["GET", "POST", "DELETE"]),
    st.sampled_from(["/api/v1/account", "/api/v1/auth/keys/{keyId}"]),
    st.integers(100, 599),
    st.floats(0, 1e6, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3)),
    st.from_regex(r"[A-Za-z0-9._:\-]{1,128}", fullmatch=True),
)
def test_the_request_path_writes_exactly_the_model_serialisation(
    moment: datetime, method: str, endpoint: str, status: int, duration: float, request_id: str
) -> None:
    ids = [new_event_id(), uuid.uuid4(), uuid.uuid4()]
    model = ApiCallRecorded(
        event_id=ids[0],
        occurred_at=moment,
        account_id=ids[1],
        key_id=ids[2],
        method=method,
        endpoint=endpoint,
        status=status,
        duration_ms=duration,
        request_id=request_id,
    )
    fast = serialise_trusted(
        ids[0], moment, ids[1], ids[2], method, endpoint, status, duration, request_id
    )
    assert fast == model.to_json()
    assert ApiCallRecorded.parse(fast) == model
