"""The monthly quota: the period, atomic admission in Redis, the durable ledger, reconcile.

`period` (the UTC month a call counts in), `admission` (the Redis script that checks and counts in
one step), `ledger` (the count written behind to PostgreSQL), `counting` (the one rule of which
calls count, and the counts it gives from the log's projection), `enforcer` (one call admitted or
refused), `reconcile` (counters against the durable counts). Imports accounts, the platform and
`timo_hub.errors`; headers and problem responses are the API's business.
"""
