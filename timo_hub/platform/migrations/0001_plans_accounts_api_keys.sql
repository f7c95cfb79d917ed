-- Plans, accounts and API keys: who a caller is and what they may use.

CREATE TABLE plans (
    name          text PRIMARY KEY,
    display_name  text NOT NULL,
    -- NULL means unlimited (enterprise).
    monthly_limit bigint CHECK (monthly_limit IS NULL OR monthly_limit >= 0),
    -- NULL means custom pricing (enterprise).
    price_usd     numeric(10, 2) CHECK (price_usd IS NULL OR price_usd >= 0),
    sort_order    smallint NOT NULL UNIQUE
);

INSERT INTO plans (name, display_name, monthly_limit, price_usd, sort_order) VALUES
    ('free',       'Free',          1000,   0.00, 1),
    ('starter',    'Starter API',   5000,  29.00, 2),
    ('developer',  'Developer API', 50000, 99.00, 3),
    ('business',   'Business API',  250000, 299.00, 4),
    ('enterprise', 'Enterprise',    NULL,   NULL, 5);

CREATE TABLE accounts (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    plan       text NOT NULL REFERENCES plans (name),
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Emails are unique regardless of case.
CREATE UNIQUE INDEX accounts_email_unique ON accounts (lower(email));

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- What the owner sees to recognise a key, e.g. 'timo_live_abc1'.
    prefix       text NOT NULL,
    -- HMAC-SHA256 of the full key with TIMO_KEY_PEPPER; the key itself is never stored.
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE INDEX api_keys_account_id ON api_keys (account_id, created_at);
