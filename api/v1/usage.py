"""`/api/v1/usage/*`: statistics, forecast and projected-quota alerts for the caller's account."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from api.current import current_admission, current_principal, current_runtime
from api.openapi.registry import Reply, operation
from api.query import parse_query
from api.v1 import blueprint
from api.v1.usage_schemas import (
    ForecastOut,
    UsageAlertListOut,
    UsageAlertOut,
    UsageForecastQuery,
    UsageStatsOut,
    UsageStatsQuery,
)
from timo_hub.usage import alerts, forecasts, statistics

MAX_ALERTS = 100


def _json(body: BaseModel) -> ResponseReturnValue:
    return current_app.response_class(body.model_dump_json(), mimetype="application/json")


@operation(
    blueprint,
    "GET",
    "/usage/stats",
    summary="Usage statistics for the last 7, 30 or 90 days",
    tag="usage",
    query=UsageStatsQuery,
    replies=(Reply(200, "Totals, a daily series and breakdowns.", UsageStatsOut),),
)
def get_usage_stats() -> ResponseReturnValue:
    """Totals, a zero-filled daily series and breakdowns for the last 7, 30 or 90 UTC days."""
    query = parse_query(UsageStatsQuery)
    today = datetime.now(UTC).date()
    result = statistics.account_usage_stats(
        current_runtime().database, current_principal().account_id, query.period, today
    )
    return _json(UsageStatsOut.of(result))


@operation(
    blueprint,
    "GET",
    "/usage/forecast",
    summary="Forecast of daily calls, this month's projection and quota exhaustion date",
    tag="usage",
    query=UsageForecastQuery,
    replies=(Reply(200, "The forecast.", ForecastOut),),
)
def get_usage_forecast() -> ResponseReturnValue:
    """Predicted daily calls, the month's projection and the quota exhaustion date."""
    query = parse_query(UsageForecastQuery)
    # The month's count as the quota counter had it when it admitted this call (what
    # `/account/quota` answers): a stored forecast that has fallen behind it is recomputed, so the
    # two cannot disagree by more than `forecasts.STALE_USED_SHARE` of the limit.
    body = forecasts.get_forecast(
        current_runtime().database,
        current_principal().account_id,
        days=query.days,
        model=query.model,
        now=datetime.now(UTC),
        live_used=current_admission().used,
    )
    return _json(body)


@operation(
    blueprint,
    "GET",
    "/usage/alerts",
    summary="Projected-quota alerts",
    tag="usage",
    replies=(
        Reply(200, "Alerts raised by the nightly forecast, newest first.", UsageAlertListOut),
    ),
)
def get_usage_alerts() -> ResponseReturnValue:
    """Projected-quota alerts raised by the nightly forecast, newest first."""
    stored = alerts.account_alerts(
        current_runtime().database, current_principal().account_id, MAX_ALERTS
    )
    return _json(UsageAlertListOut(alerts=[UsageAlertOut.of(alert) for alert in stored]))
