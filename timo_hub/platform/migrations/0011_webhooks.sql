-- Webhooks: the endpoints customers register, what happened to their accounts (each thing once),
-- and every delivery of it to every endpoint, with every attempt.

-- The percentages of the monthly quota at which `quota.threshold_reached` fires, ascending.
ALTER TABLE accounts ADD COLUMN alert_thresholds smallint[] NOT NULL DEFAULT '{50,80,100}'
    CHECK (cardinality(alert_thresholds) BETWEEN 0 AND 10
           AND 1 <= ALL (alert_thresholds) AND 100 >= ALL (alert_thresholds));

CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id             uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url                    text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    description            text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    events                 text[] NOT NULL CHECK (cardinality(events) >= 1),
    -- Kept to sign with (HMAC needs the secret itself, as every webhook sender does). After a
    -- rotation the old one also signs until `previous_secret_expires_at`.
    secret                 text NOT NULL,
    previous_secret        text,
    previous_secret_expires_at timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    -- Set when every attempt since then has failed; cleared by a success. Five days of it
    -- disable the endpoint.
    failing_since          timestamptz,
    disabled_at            timestamptz,
    disabled_reason        text
);

CREATE INDEX webhook_endpoints_account_id ON webhook_endpoints (account_id, created_at);

-- What happened to an account, recorded once: `dedupe_key` names the occurrence (the month for
-- `quota.exhausted`, month and threshold for `quota.threshold_reached`, the key for key events),
-- so however many processes notice it, one row, and one delivery per endpoint.
CREATE TABLE account_notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type        text NOT NULL,
    dedupe_key  text NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- The whole webhook payload ({type, timestamp, data}), fixed once: every retry and replay of
    -- every delivery sends these same bytes' content.
    payload     jsonb NOT NULL,
    UNIQUE (account_id, type, dedupe_key)
);

-- One logical delivery: a notification (or a test message) to one endpoint. Its id is the
-- `webhook-id` every attempt carries. `next_attempt_at` is when it is next due while pending; a
-- worker sending it pushes that ahead first (its claim), so a worker killed mid-send leaves it
-- due again shortly, with the same id.
CREATE TABLE webhook_deliveries (
    id              text PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    notification_id uuid REFERENCES account_notifications (id) ON DELETE CASCADE,
    type            text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- Attempts in the current round: a replay starts a new round of the retry schedule.
    round_attempts  integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    UNIQUE (endpoint_id, notification_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);

-- Every attempt, written before the request is sent (status NULL: no answer recorded yet, or
-- the worker died mid-send) and completed after.
CREATE TABLE webhook_attempts (
    delivery_id   text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    status_code   integer,
    latency_ms    integer,
    error         text,
    response      text,
    PRIMARY KEY (delivery_id, attempt)
);
