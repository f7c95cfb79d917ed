"""The platform every process stands on: configuration, connections, logs, months, servers.

`settings` (the only reader of the environment), `db` (a fork-aware psycopg pool), `runtime` (a
process's settings and connections), `logs`, `prometheus` (multi-process metrics plumbing),
`months` (UTC calendar arithmetic), `json_types`, `heartbeat` (worker liveness), `embedded`
(PostgreSQL and Redis from wheels), `migrate` with the SQL files in `migrations/`.

Imports nothing else of the product: no domain package, `events`, `analytics`, `api` or
`workers`.
"""
