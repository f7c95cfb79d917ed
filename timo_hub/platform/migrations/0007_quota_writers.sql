-- The web processes that hold quota tallies not yet in `quota_usage`, so that rebuilding a lost
-- Redis counter can wait until every live one has written what it holds (timo_hub/quota/sync.py).
-- A process registers before it admits its first call, refreshes `seen_at` at least every second
-- and deletes its row when it exits cleanly; a row whose `seen_at` is older than a few seconds
-- belongs to a process that died, and rebuilds stop waiting for it.
CREATE TABLE quota_writers (
    writer_id      uuid PRIMARY KEY,
    host           text NOT NULL,
    pid            integer NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    seen_at        timestamptz NOT NULL DEFAULT now(),
    -- The last tally batch written, so a batch retried after an ambiguous failure (the commit
    -- went through, its acknowledgement did not) is not added twice.
    flushed_seq    bigint NOT NULL DEFAULT 0,
    -- The highest rebuild request this process has answered by writing everything it held.
    synced_through bigint NOT NULL DEFAULT 0
);

-- Rebuild requests, numbered in one place that survives a Redis loss.
CREATE SEQUENCE quota_sync_seq;
