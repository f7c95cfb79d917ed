-- The nightly forecast run (issue 19): one run per UTC day, its active accounts split into chunks
-- that workers compute a task at a time (`timo_hub.usage.forecast_runs`).

-- `for_day` is unique: planning the same day twice (beat firing twice, a redelivered
-- `forecast_all`) finds the run instead of starting another. `started_at` is when it was planned:
-- a default forecast of `for_day` stored since then counts as done by this run. `accounts` and
-- `chunks` are fixed when it is planned; `finished_at` is set once every chunk is done.
CREATE TABLE forecast_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    for_day     date NOT NULL UNIQUE,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    chunk_size  integer NOT NULL CHECK (chunk_size >= 1),
    accounts    integer NOT NULL DEFAULT 0 CHECK (accounts >= 0),
    chunks      integer NOT NULL DEFAULT 0 CHECK (chunks >= 0)
);

-- A chunk is the ids of up to `chunk_size` accounts (in id order) and a cursor over them:
-- `settled` accounts from the start are done (succeeded, failed, or skipped because this run had
-- already stored their forecast), written at checkpoints while the chunk is computed. An
-- execution owns the chunk from its claim (`attempts` + 1) until another claims it, and its
-- checkpoints apply only while it owns it. State: waiting (`started_at` NULL), in progress
-- (started, `done_at` NULL) or done. `queued_at` is when a task was last queued for it and
-- `touched_at` when it was last claimed or checkpointed: the sweep re-queues the unfinished chunks
-- of a run that has gone quiet (`forecast_runs.chunks_to_queue`).
CREATE TABLE forecast_run_chunks (
    run_id      bigint NOT NULL REFERENCES forecast_runs (id) ON DELETE CASCADE,
    chunk       integer NOT NULL CHECK (chunk >= 0),
    account_ids uuid[] NOT NULL CHECK (cardinality(account_ids) >= 1),
    settled     integer NOT NULL DEFAULT 0,
    succeeded   integer NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed      integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    skipped     integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    queued_at   timestamptz,
    started_at  timestamptz,
    touched_at  timestamptz,
    done_at     timestamptz,
    PRIMARY KEY (run_id, chunk),
    CHECK (settled BETWEEN 0 AND cardinality(account_ids)),
    CHECK (succeeded + failed + skipped = settled),
    CHECK ((done_at IS NOT NULL) = (settled = cardinality(account_ids)))
);

-- What the sweep and the finish check read: a run's chunks that are not done.
CREATE INDEX forecast_run_chunks_unfinished ON forecast_run_chunks (run_id, chunk)
    WHERE done_at IS NULL;
