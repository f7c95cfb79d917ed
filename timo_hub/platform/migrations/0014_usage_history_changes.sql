-- Accounts whose past changed: a row per account and batch that appended events for a UTC day
-- before the one it was ingested on (an import, a backfill, events that arrived late). The
-- intraday projection refresh recomputes a forecast made before such a change, so that a
-- projected exhaustion an import reveals is announced that day, not the next night. Plain
-- inserts, no key: concurrent batches never wait on each other here. Rows older than a couple of
-- days are deleted by the refresh (a forecast is at most a day old).
CREATE TABLE usage_history_changes (
    account_id uuid NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX usage_history_changes_account ON usage_history_changes (account_id, changed_at);
CREATE INDEX usage_history_changes_changed_at ON usage_history_changes (changed_at);
