"""Usage analytics: statistics over daily usage and quota forecasting.

Pure functions: pandas, numpy and statsmodels in, frozen dataclasses out. Nothing here imports
Flask, Celery or psycopg, reads a clock or touches a database; callers pass in the rows, the dates
and the plans, so every result is reproducible from its inputs and testable with hand-built frames.
It imports no other package of the product.

* `parameters`: the periods, horizons and models a caller may ask for (no heavy imports).
* `history`: a daily call series ready for modelling (zero-filled, partial days handled).
* `forecast_models`: the forecasting models (linear, seasonal, seasonal naive, short-history
  mean).
* `backtest`: rolling-origin evaluation and the error measures (MASE, sMAPE, total error).
* `forecasting`: `forecast()`, which picks a model (`auto`) and returns daily predictions with
  80%/95% intervals and the sample paths behind them.
* `month_projection`: the current month's projected total, the quota exhaustion date and the
  plan that would cover it (the caller says which days the month has).
* `stats`: 7/30/90-day usage statistics from `usage_daily` rows.
"""
