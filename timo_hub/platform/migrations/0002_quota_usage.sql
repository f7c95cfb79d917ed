-- The durable monthly count of admitted calls, from which a lost Redis counter is rebuilt.
-- Web processes add their admissions here a fraction of a second after counting them in Redis
-- (api/quota/ledger.py). The event pipeline will derive the same number from the event log.

CREATE TABLE quota_usage (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- First day of the UTC month the calls were admitted in.
    period     date NOT NULL CHECK (extract(day FROM period) = 1),
    used       bigint NOT NULL CHECK (used >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, period)
);
