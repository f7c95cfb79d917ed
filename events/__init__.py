"""The event-sourced core: usage events, their publisher, the append-only log, projections.

`model` (the `ApiCallRecorded` event), `spool` and `publisher` (from the request path to the
broker), `event_log` (appending and folding into `usage_daily`), `partitions` (the log's monthly
partitions), `retention`, `ingest`, `importer`, `projection_rebuild`, `samples`,
`pipeline_metrics`. Imports only the platform: not `api`, `workers`, `analytics` or the domain
packages (what counts against a quota is `timo_hub.quota`'s rule, not the log's).
"""
