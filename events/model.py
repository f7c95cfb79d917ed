"""The usage event: one authenticated API call, immutable, with its single JSON serialisation.

`ApiCallRecorded` is what the API publishes, the workers ingest and `events import` reads: all
three use `to_json()` / `parse()`, so there is exactly one wire format. `SCHEMA_VERSION` changes
when the fields do; readers refuse versions they do not know rather than guess.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import uuid_utils as uuid_utils_native
import uuid_utils.compat as uuid_utils
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

SCHEMA_VERSION = 1


class InvalidEventError(ValueError):
    """A payload that is not a valid usage event; the message says why."""


def _require_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("occurred_at must carry a time zone")
    return moment.astimezone(UTC)


def _utc_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _no_nul(text: str) -> str:
    # PostgreSQL's `text` cannot hold NUL: such an event could never be stored, and must be
    # refused here (a dead letter), not by the insert of its whole batch.
    if "\0" in text:
        raise ValueError("contains a NUL character")
    return text


UtcMoment = Annotated[
    datetime, AfterValidator(_require_utc), PlainSerializer(_utc_iso, return_type=str)
]


class ApiCallRecorded(BaseModel):
    """An authenticated call to `/api/v1` happened (admitted, refused or failed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    occurred_at: UtcMoment
    account_id: uuid.UUID
    key_id: uuid.UUID
    method: Annotated[str, AfterValidator(_no_nul)] = Field(min_length=1, max_length=16)
    endpoint: Annotated[str, AfterValidator(_no_nul)] = Field(
        min_length=1, max_length=200, description="The route template."
    )
    status: int = Field(ge=100, le=599)
    duration_ms: float = Field(ge=0)
    request_id: Annotated[str, AfterValidator(_no_nul)] = Field(min_length=1, max_length=128)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The one serialisation of an event."""
        return self.model_dump_json()

    @classmethod
    def parse(cls, payload: str | bytes) -> ApiCallRecorded:
        """Read an event from its JSON; `InvalidEventError` says what is wrong."""
        try:
            event = cls.model_validate_json(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise InvalidEventError(problems) from None
        if event.schema_version != SCHEMA_VERSION:
            raise InvalidEventError(f"unknown schema_version {event.schema_version}")
        return event


# The same bytes `to_json()` writes, for the request path, where building a pydantic model per call
# costs more than the rest of publishing. Only for trusted values: UUIDs, numbers, and strings
# that need no JSON escaping (a method token, a route template, a request id of [A-Za-z0-9._:-]);
# tests hold the two serialisations byte for byte equal.
_FAST_TEMPLATE = (
    '{{"event_id":"{}","occurred_at":"{}","account_id":"{}","key_id":"{}","method":"{}",'
    '"endpoint":"{}","status":{},"duration_ms":{!r},"request_id":"{}","schema_version":{}}}'
)


def serialise_trusted(
    event_id: uuid.UUID | str,
    occurred_at: datetime,
    account_id: uuid.UUID | str,
    key_id: uuid.UUID | str,
    method: str,
    endpoint: str,
    status: int,
    duration_ms: float,
    request_id: str,
) -> str:
    """`ApiCallRecorded(...).to_json()` without building the model (see `_FAST_TEMPLATE`).

    The ids may be given as their canonical text (a cached principal keeps it).
    """
    return _FAST_TEMPLATE.format(
        event_id,
        _utc_iso(occurred_at),
        account_id,
        key_id,
        method,
        endpoint,
        status,
        float(duration_ms),
        request_id,
        SCHEMA_VERSION,
    )


def new_event_id() -> uuid.UUID:
    """A UUIDv7: unique, and sorting by time."""
    return uuid_utils.uuid7()


def new_event_id_text() -> str:
    """A new event id (a UUIDv7) in its canonical text, for `serialise_trusted`: made and
    formatted by uuid-utils itself, without the standard `uuid.UUID` in between (~2 us less)."""
    return str(uuid_utils_native.uuid7())
