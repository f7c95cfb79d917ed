"""Response bodies of `/api/v1/usage/*`, as pydantic models (the OpenAPI source of truth)."""

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
from api.v1.schemas import UtcDatetime

if TYPE_CHECKING:
    from analytics import stats
    from timo_hub.usage.store import StoredAlert


class DailyUsageOut(BaseModel):
    """One day of a stats period."""

    date: date
    calls: int
    errors: int = Field(description="4xx (except 429) and 5xx answers.")
    rejected: int = Field(description="429 answers: over quota.")


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
    server_errors: int = Field(description="5xx answers.")
    rejected: int = Field(description="429 answers (over quota).")
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
            period=result.period,  # type: ignore[arg-type]
            start=result.start,
            end=result.end,
            total_calls=result.total_calls,
            successful=result.successful,
            client_errors=result.client_errors,
            server_errors=result.server_errors,
            rejected=result.rejected,
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


class _Strict(BaseModel):
    # Stored forecast bodies are validated against these models before they are served.
    model_config = ConfigDict(extra="forbid")


class ForecastDayOut(_Strict):
    """Predicted calls on one future day, with 80% and 95% prediction intervals."""

    date: date
    predicted: float = Field(ge=0, description="Median forecast.")
    lower80: float = Field(ge=0)
    upper80: float = Field(ge=0)
    lower95: float = Field(ge=0)
    upper95: float = Field(ge=0)


class CurrentMonthOut(_Strict):
    """This UTC month: calls so far and where it is heading."""

    start: date
    end: date = Field(description="Last day of the month.")
    used: int = Field(description="Calls counted against the quota so far, as of generated_at.")
    limit: int | None = Field(description="Null means unlimited.")
    projected_total: float = Field(ge=0, description="Median projection of the month's calls.")
    projected_total_lower80: float = Field(ge=0)
    projected_total_upper80: float = Field(ge=0)
    projected_remaining: float | None = Field(
        description="Limit minus the projected total, not below 0; null when unlimited."
    )


class ExhaustionRangeOut(_Strict):
    """The 80% range of the day the quota runs out."""

    earliest: date | None = Field(description="10th percentile; null: unlikely this month.")
    latest: date | None = Field(description="90th percentile; null: may last the month.")
    probability: float | None = Field(
        description="Chance of running out this month; null when unlimited."
    )


class PlanSuggestionOut(_Strict):
    """The cheapest plan whose limit covers the month's upper 80% projection."""

    name: str
    monthly_limit: int | None
    price_usd: float | None


class AccuracyOut(_Strict):
    """How the model did forecasting this account's own past (rolling origin)."""

    method: Literal["rolling_origin"]
    origins: int
    horizon_days: int
    mase: float = Field(description="Mean absolute scaled error; below 1 beats last week's values.")
    smape: float = Field(description="Symmetric mean absolute percentage error, 0 to 200.")
    total_error_pct: float | None = Field(
        description="Mean absolute % error of the horizon's total calls."
    )


class ForecastOut(_Strict):
    """`GET /api/v1/usage/forecast`."""

    model: Literal["linear", "seasonal", "seasonal_naive", "mean", "none"] = Field(
        description="The model that ran: `seasonal_naive` (last week's values) when `auto` found "
        "it the most accurate, `mean` for under 14 days of history, `none` for none."
    )
    requested_model: Literal["auto", "linear", "seasonal"]
    history_days: int
    generated_at: UtcDatetime
    days: int
    daily: list[ForecastDayOut] = Field(description="One entry per date, starting tomorrow.")
    current_month: CurrentMonthOut
    exhaustion_date: date | None = Field(
        description="First day the month's calls are projected to reach the limit; null if not."
    )
    exhaustion_range80: ExhaustionRangeOut
    recommended_plan: PlanSuggestionOut | None
    accuracy: AccuracyOut | None = Field(description="Null when the history is too short.")
    note: str | None


class UsageAlertOut(BaseModel):
    """A projected-quota alert: raised once per account, month and kind."""

    id: int
    month: date = Field(description="First day of the month it concerns.")
    kind: Literal["projected_80_percent", "projected_exhaustion"]
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
            kind=alert.kind,  # type: ignore[arg-type]
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
