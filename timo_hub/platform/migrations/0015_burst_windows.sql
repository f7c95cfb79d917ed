-- Burst windows (issue 17): each plan's limit per short window besides its monthly quota, the
-- per-account limits operators set for contracts, and the ledger of calls per window that a lost
-- Redis window is rebuilt from.

-- NULL means no burst limit (enterprise). The window divides an hour, so no window straddles two
-- months (each month's windows are counted apart, under that month's counter).
ALTER TABLE plans
    -- At least 1 (a window that admits nothing never opens: suspend the account instead), at
    -- most the largest Integer the RateLimit headers' Structured Fields carry (15 digits).
    ADD COLUMN burst_limit bigint
        CHECK (burst_limit IS NULL OR burst_limit BETWEEN 1 AND 999999999999999),
    ADD COLUMN burst_window_seconds integer NOT NULL DEFAULT 60
        CHECK (burst_window_seconds BETWEEN 1 AND 3600 AND 3600 % burst_window_seconds = 0);

UPDATE plans SET burst_limit = CASE name
    WHEN 'free' THEN 60
    WHEN 'starter' THEN 300
    WHEN 'developer' THEN 1000
    WHEN 'business' THEN 5000
END;

-- An operator's limit for one account, in place of its plan's (a row per policy set; none: the
-- plan's). `calls` NULL means unlimited. It survives plan changes: it is the account's contract.
CREATE TABLE account_limit_overrides (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    policy     text NOT NULL CHECK (policy IN ('month', 'burst')),
    calls      bigint CHECK (calls IS NULL OR calls BETWEEN 0 AND 999999999999999),
    CHECK (policy = 'month' OR calls IS NULL OR calls >= 1),
    set_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, policy)
);

-- Every account's limits in force: its overrides, else its plan's. Everything that enforces,
-- shows or forecasts against a limit reads this.
CREATE VIEW account_limits AS
SELECT a.id AS account_id,
       CASE WHEN m.account_id IS NULL THEN p.monthly_limit ELSE m.calls END AS monthly_limit,
       CASE WHEN b.account_id IS NULL THEN p.burst_limit ELSE b.calls END AS burst_limit,
       p.burst_window_seconds
FROM accounts a
JOIN plans p ON p.name = a.plan
LEFT JOIN account_limit_overrides m ON m.account_id = a.id AND m.policy = 'month'
LEFT JOIN account_limit_overrides b ON b.account_id = a.id AND b.policy = 'burst';

-- Calls admitted per account and burst window (`window_start`, on Redis's clock), added by each
-- web process's ledger writes beside `quota_usage`: a rebuilt counter's current window is seeded
-- from it. Rows are only needed for a few windows; reconcile deletes older ones.
CREATE TABLE quota_window_usage (
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    used         bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (account_id, window_start)
);

CREATE INDEX quota_window_usage_window_start ON quota_window_usage (window_start);
