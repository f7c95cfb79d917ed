"""gunicorn settings for the web process (`gunicorn --config python:api.gunicorn_config …`).

The master imports the analytics stack (numpy, pandas, statsmodels: about two seconds of CPU)
once, before it forks its workers, so every worker starts with it already in memory (shared
copy-on-write) instead of each importing it at boot or on its first forecast. Nothing else is
built here: no app, no connections, no threads, so nothing unsafe crosses the fork.
"""

import os

# One BLAS thread per process: a web worker's matrices are tiny, and thread pools created before
# a fork are a classic source of trouble in the children.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import analytics.forecasting
import analytics.projection
import analytics.stats

PRELOADED = (analytics.forecasting, analytics.projection, analytics.stats)
