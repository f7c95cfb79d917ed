"""Field types for the JSON the product writes (API bodies, stored forecasts).

Platform code: imports nothing else of the product.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer


def utc_iso(moment: datetime) -> str:
    """`moment` as the API writes every datetime: UTC ISO 8601 with a `Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(utc_iso, return_type=str)]
"""A datetime written as UTC ISO 8601 with a `Z` (`2026-12-01T09:30:00.123456Z`)."""
