"""Usage analytics as a service: reads `usage_daily`, runs `analytics`, stores forecasts and alerts.

Shared by the API (on-demand stats and forecasts), the workers (the nightly forecast run) and the
CLI (`timo-hub forecast run`). The modelling itself is in `analytics` (pure); this package owns the
SQL (`store`) and the rules around it: when a stored forecast is fresh and when an alert is due.
"""
