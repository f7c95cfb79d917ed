-- People who sign in to the dashboard. Each belongs to one account; today every user is its
-- account's owner (signup opens both, `timo-hub accounts create --invite` invites one).

CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email               text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    role                text NOT NULL DEFAULT 'owner' CHECK (role IN ('owner')),
    -- An argon2id PHC string; NULL until an invited owner sets a password.
    password_hash       text,
    -- Every signed-in session carries the epoch it began in; a password change bumps it, which
    -- ends every session begun before (they live in Redis, keyed by nothing we could list).
    session_epoch       integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz
);

CREATE UNIQUE INDEX users_email_unique ON users (lower(email));
CREATE INDEX users_account_id ON users (account_id);

-- One-time links that let an invited user set a password. Only a SHA-256 of the token is kept.
CREATE TABLE user_invitations (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX user_invitations_user_id ON user_invitations (user_id);
