"""Response bodies of `/api/v1/usage/*`, as pydantic models (the OpenAPI source of truth).

The forecast's body is defined by the domain (`timo_hub.usage.forecast_body`), which stores it
too; it is re-exported here with the rest.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from analytics.parameters import (
    DEFAULT_HORIZON_DAYS,
    DEFAULT_MODEL,
    DEFAULT_PERIOD,
    MAX_HORIZON_DAYS,
    MIN_HORIZON_DAYS,
)
from api.query import WholeNumber
from timo_hub.platform.json_types import UtcDatetime
from timo_hub.usage.alerts import AlertKind
from timo_hub.usage.forecast_body import ForecastOut

if TYPE_CHECKING:
    from analytics import stats
    from timo_hub.usage.alerts import StoredAlert

__all__ = ["ForecastOut"]  # the forecast's body is the domain's model (`timo_hub.usage`)


class DailyUsageOut(BaseModel):
    """One day of a stats period."""

    date: date
    calls: int
    errors: int = Field(description="4xx (except 429) and 5xx answers.")
    rejected: int = Field(description="429 answers: over a limit (the month or the burst window).")


class PeakDayOut(BaseModel):
    """The busiest day of the period."""

    date: date
    calls: int


class EndpointUsageOut(BaseModel):
    """Calls to one route template."""

    endpoint: str = Field(description="Route template, e.g. `/auth/keys/{keyId}`.")
    calls: int


class KeyUsageOut(BaseModel):
    """Calls made with one API key."""

    key_id: uuid.UUID
    name: str | None
    prefix: str | None = Field(description="The key's display prefix; never the key.")
    calls: int


class UsageStatsOut(BaseModel):
    """`GET /api/v1/usage/stats`."""

    period: Literal["7d", "30d", "90d"]
    start: date = Field(description="First UTC day of the period.")
    end: date = Field(description="Last UTC day of the period: today (so far).")
    total_calls: int
    successful: int = Field(description="2xx and 3xx answers.")
    client_errors: int = Field(description="4xx answers except 429.")
    server_errors: int = Field(description="5xx answers (never charged).")
    rejected: int = Field(description="429 answers (over the month's or the burst window's limit).")
    charged: int = Field(
        description="Calls counted against the quota in this period: every answer except 403, "
        "429 and 5xx (over the same days, what `/account/quota` counts as `used`)."
    )
    daily: list[DailyUsageOut] = Field(description="Every day of the period, zero-filled.")
    average_per_day: float
    peak_day: PeakDayOut | None = Field(description="Null when the period had no calls.")
    by_endpoint: list[EndpointUsageOut] = Field(description="Busiest first.")
    by_key: list[KeyUsageOut] = Field(description="Busiest first.")
    average_duration_ms: float | None = Field(description="Null when there were no calls.")
    change_vs_previous_period: float | None = Field(
        description="Percent change over complete days: the period's calls before today against "
        "the N-1 days before them (today is not over yet); null when those had no calls."
    )

    @classmethod
    def of(cls, result: stats.UsageStats) -> UsageStatsOut:
        """Build from computed statistics."""
        peak = result.peak_day
        return cls(
            period=result.period,
            start=result.start,
            end=result.end,
            total_calls=result.total_calls,
            successful=result.successful,
            client_errors=result.client_errors,
            server_errors=result.server_errors,
            rejected=result.rejected,
            charged=result.charged,
            daily=[
                DailyUsageOut(date=d.day, calls=d.calls, errors=d.errors, rejected=d.rejected)
                for d in result.daily
            ],
            average_per_day=round(result.average_per_day, 2),
            peak_day=PeakDayOut(date=peak.day, calls=peak.calls) if peak else None,
            by_endpoint=[
                EndpointUsageOut(endpoint=e.endpoint, calls=e.calls) for e in result.by_endpoint
            ],
            by_key=[
                KeyUsageOut(key_id=k.key_id, name=k.name, prefix=k.prefix, calls=k.calls)
                for k in result.by_key
            ],
            average_duration_ms=(
                None if result.average_duration_ms is None else round(result.average_duration_ms, 3)
            ),
            change_vs_previous_period=(
                None
                if result.change_vs_previous_period is None
                else round(result.change_vs_previous_period, 1)
            ),
        )


class UsageAlertOut(BaseModel):
    """A projected-quota alert: raised once per account, month and kind."""

    id: int
    month: date = Field(description="First day of the month it concerns.")
    kind: AlertKind
    raised_at: UtcDatetime
    limit: int
    used: int = Field(description="Calls counted when it was raised.")
    projected_total: int
    exhaustion_date: date | None

    @classmethod
    def of(cls, alert: StoredAlert) -> UsageAlertOut:
        """Build from a stored alert."""
        return cls(
            id=alert.id,
            month=alert.month,
            kind=alert.kind,
            raised_at=alert.raised_at,
            limit=alert.monthly_limit,
            used=alert.used,
            projected_total=alert.projected_total,
            exhaustion_date=alert.exhaustion_date,
        )


class UsageAlertListOut(BaseModel):
    """`GET /api/v1/usage/alerts`: newest first."""

    alerts: list[UsageAlertOut]


class UsageStatsQuery(BaseModel):
    """Query of `GET /api/v1/usage/stats`."""

    model_config = ConfigDict(extra="ignore")

    period: Literal["7d", "30d", "90d"] = Field(
        DEFAULT_PERIOD, description="The last 7, 30 or 90 UTC days, today included."
    )


class UsageForecastQuery(BaseModel):
    """Query of `GET /api/v1/usage/forecast`."""

    model_config = ConfigDict(extra="ignore")

    days: WholeNumber = Field(
        DEFAULT_HORIZON_DAYS,
        ge=MIN_HORIZON_DAYS,
        le=MAX_HORIZON_DAYS,
        description="How many days to forecast, from tomorrow.",
    )
    model: Literal["auto", "linear", "seasonal"] = Field(
        DEFAULT_MODEL,
        description="`auto` picks the model with the lower backtest error on your history.",
    )
