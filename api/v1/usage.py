"""`/api/v1/usage/*`: statistics, forecast and projected-quota alerts for the caller's account."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from analytics.parameters import (
    DEFAULT_HORIZON_DAYS,
    DEFAULT_MODEL,
    DEFAULT_PERIOD,
    MAX_HORIZON_DAYS,
    MIN_HORIZON_DAYS,
    MODEL_CHOICES,
    PERIODS,
)
from api.authentication import current_principal
from api.query import choice_param, int_param
from api.runtime import current_runtime
from api.v1 import blueprint
from api.v1.usage_models import ForecastOut, UsageAlertListOut, UsageAlertOut, UsageStatsOut
from timo_hub.usage import forecasts, statistics, store

MAX_ALERTS = 100


def _json(body: BaseModel) -> ResponseReturnValue:
    return current_app.response_class(body.model_dump_json(), mimetype="application/json")


@blueprint.get("/usage/stats")
def get_usage_stats() -> ResponseReturnValue:
    """Totals, a zero-filled daily series and breakdowns for the last 7, 30 or 90 UTC days."""
    period = choice_param("period", tuple(PERIODS), DEFAULT_PERIOD)
    today = datetime.now(UTC).date()
    result = statistics.account_usage_stats(
        current_runtime().database, current_principal().account_id, period, today
    )
    return _json(UsageStatsOut.of(result))


@blueprint.get("/usage/forecast")
def get_usage_forecast() -> ResponseReturnValue:
    """Predicted daily calls, the month's projection and the quota exhaustion date."""
    days = int_param("days", MIN_HORIZON_DAYS, MAX_HORIZON_DAYS, DEFAULT_HORIZON_DAYS)
    model = choice_param("model", MODEL_CHOICES, DEFAULT_MODEL)
    body = forecasts.get_forecast(
        current_runtime().database,
        current_principal().account_id,
        days=days,
        model=model,
        now=datetime.now(UTC),
    )
    return _json(ForecastOut.model_validate(body))


@blueprint.get("/usage/alerts")
def get_usage_alerts() -> ResponseReturnValue:
    """Projected-quota alerts raised by the nightly forecast, newest first."""
    with current_runtime().database.connection() as conn:
        alerts = store.alerts(conn, current_principal().account_id, MAX_ALERTS)
    return _json(UsageAlertListOut(alerts=[UsageAlertOut.of(alert) for alert in alerts]))
