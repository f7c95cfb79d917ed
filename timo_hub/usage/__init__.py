"""Usage as the customer sees it: statistics, forecasts and projected-quota alerts.

Shared by the API (on-demand stats and forecasts), the workers (the nightly forecast run) and the
CLI (`timo-hub forecast run`). The modelling itself is in `analytics` (pure); this package reads
the `usage_daily` projection (`daily_usage`), stores forecasts (`forecast_store`, with the body's
model and version in `forecast_body`), decides when a stored forecast is fresh (`forecasts`) and
when an alert is due (`alerts`). Imports accounts, quota, analytics, the platform and
`timo_hub.errors`.
"""
