"""Timo Hub's domain and platform: what the HTTP API, the workers and the CLI all stand on.

* `timo_hub.platform`: settings, PostgreSQL and Redis connections, the process runtime, logs,
  Prometheus plumbing, UTC months, embedded servers and migrations. Imports nothing else of the
  product.
* `timo_hub.errors`: the domain's error hierarchy (no HTTP in it).
* `timo_hub.accounts`: accounts, plans and API keys (key format, hashing, principal, cache,
  store, service). Imports platform and errors.
* `timo_hub.quota`: the monthly quota (period, admission, ledger, reconcile, and which calls
  count). Imports accounts, platform and errors.
* `timo_hub.usage`: statistics, forecasts and projected-quota alerts. Imports accounts, quota,
  analytics, events, platform and errors.
* `timo_hub.cli`: the `timo-hub` command, a thin layer over the domain (never imports `api`).

`tests/test_architecture.py` checks these directions on every module.
"""

__version__ = "1.0.0"
API_VERSION = "1.0.0"
