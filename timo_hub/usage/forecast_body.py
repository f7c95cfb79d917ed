"""The forecast as the API serves it and the `forecasts` table stores it: pydantic models.

`forecast_body()` builds a `ForecastOut` from the analytics' result; the API serves it as is and
the table keeps `model_dump(mode="json")` of it, tagged with `SCHEMA_VERSION`. Any change to the
shape of these models must bump `SCHEMA_VERSION`: stored bodies of another version are then
recomputed, never served (and a stored body that no longer validates is recomputed too), so a
deploy can never turn a day's stored forecasts into errors.

The class names are the OpenAPI document's schema names, hence the `Out` suffix.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from timo_hub.platform.json_types import UtcDatetime

if TYPE_CHECKING:
    from analytics.forecasting import Forecast
    from analytics.month_projection import MonthProjection

SCHEMA_VERSION = 1
"""The shape of these models. 1: as first stored (migration 0005), which these models reproduce."""

ForecastModel = Literal["linear", "seasonal", "mean", "none"]


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

    model: ForecastModel = Field(
        description="The model that ran: `linear` or `seasonal` (the one `auto` found the more "
        "accurate on this history, or the one asked for), `mean` for under 14 days of history "
        "or when no model could be fitted, `none` for none."
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


def forecast_body(
    result: Forecast,
    projection: MonthProjection,
    *,
    days: int,
    requested_model: Literal["auto", "linear", "seasonal"],
    generated_at: datetime,
) -> ForecastOut:
    """The body `/api/v1/usage/forecast` serves (and the forecasts table stores).

    `result` starts today; the body's `daily` covers the `days` dates after today.
    """
    daily = [
        ForecastDayOut(
            date=day,
            predicted=_calls(result.predicted[i]),
            lower80=_calls(result.lower80[i]),
            upper80=_calls(result.upper80[i]),
            lower95=_calls(result.lower95[i]),
            upper95=_calls(result.upper95[i]),
        )
        for i, day in enumerate(result.dates())
        if 1 <= i <= days
    ]
    plan = projection.recommended_plan
    accuracy = result.accuracy
    probability = projection.exhaustion_probability
    return ForecastOut(
        model=_served_model(result.model),
        requested_model=requested_model,
        history_days=result.history_days,
        generated_at=generated_at,
        days=days,
        daily=daily,
        current_month=CurrentMonthOut(
            start=projection.first_day,
            end=projection.last_day,
            used=projection.used,
            limit=projection.limit,
            projected_total=_calls(projection.projected_total),
            projected_total_lower80=_calls(projection.projected_total_lower80),
            projected_total_upper80=_calls(projection.projected_total_upper80),
            projected_remaining=(
                None
                if projection.projected_remaining is None
                else _calls(projection.projected_remaining)
            ),
        ),
        exhaustion_date=projection.exhaustion_date,
        exhaustion_range80=ExhaustionRangeOut(
            earliest=projection.exhaustion_earliest,
            latest=projection.exhaustion_latest,
            probability=None if probability is None else round(probability, 3),
        ),
        recommended_plan=(
            None
            if plan is None
            else PlanSuggestionOut(
                name=plan.name, monthly_limit=plan.monthly_limit, price_usd=plan.price_usd
            )
        ),
        accuracy=(
            None
            if accuracy is None
            else AccuracyOut(
                method="rolling_origin",
                origins=accuracy.origins,
                horizon_days=accuracy.horizon_days,
                mase=round(accuracy.mase, 3),
                smape=round(accuracy.smape, 2),
                total_error_pct=(
                    None if accuracy.total_error_pct is None else round(accuracy.total_error_pct, 2)
                ),
            )
        ),
        note=result.note,
    )


def _served_model(name: str) -> ForecastModel:
    # analytics also knows benchmark-only models (seasonal naive); none of them may be served.
    for served in get_args(ForecastModel):
        if name == served:
            return cast(ForecastModel, served)
    raise ValueError(f"model {name!r} is not one the API serves")


def _calls(value: float) -> float:
    return round(float(value), 1)
