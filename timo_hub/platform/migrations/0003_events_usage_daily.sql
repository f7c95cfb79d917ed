-- The event log (source of truth for usage) and the per-day projection built from it.

-- One row per authenticated API call. Append-only: rows are never updated. Partitioned by the
-- month the call occurred in; partitions are created ahead of time (beat) and on demand (ingest).
-- The primary key includes occurred_at because a partitioned table's unique keys must contain the
-- partition key; a redelivered event carries the same (event_id, occurred_at), so it is ignored.
CREATE TABLE events (
    event_id       uuid NOT NULL,
    occurred_at    timestamptz NOT NULL,
    account_id     uuid NOT NULL,
    key_id         uuid NOT NULL,
    method         text NOT NULL,
    endpoint       text NOT NULL,
    status         smallint NOT NULL CHECK (status BETWEEN 100 AND 599),
    duration_ms    double precision NOT NULL CHECK (duration_ms >= 0),
    request_id     text NOT NULL,
    schema_version smallint NOT NULL,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_account_occurred ON events (account_id, occurred_at);

-- Calls per account, UTC day, key, route template and status, folded from newly appended events
-- in the same transaction that appends them, so each event is counted exactly once.
CREATE TABLE usage_daily (
    account_id      uuid NOT NULL,
    day             date NOT NULL,
    key_id          uuid NOT NULL,
    endpoint        text NOT NULL,
    status          smallint NOT NULL,
    calls           bigint NOT NULL CHECK (calls >= 0),
    duration_ms_sum double precision NOT NULL CHECK (duration_ms_sum >= 0),
    PRIMARY KEY (account_id, day, key_id, endpoint, status)
);

CREATE INDEX usage_daily_day ON usage_daily (day);

-- Messages the workers could not read as events, kept with the reason instead of blocking the queue.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL,
    payload     text NOT NULL,
    error       text NOT NULL
);
