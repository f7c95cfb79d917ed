-- Webhooks, as reviewed: every rotated-out secret keeps signing for its own 24 hours (a second
-- rotation must not cut the first one's overlap short); a delivery knows when the dispatch run
-- last queued it (so a backlog is not queued again every few seconds) and which round of
-- attempts it is in (so an attempt still in flight when a replay starts cannot settle the
-- replay's round).

ALTER TABLE webhook_endpoints
    ADD COLUMN retired_secrets jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(retired_secrets) = 'array');
UPDATE webhook_endpoints
SET retired_secrets = jsonb_build_array(jsonb_build_object(
        'secret', previous_secret, 'expires_at', previous_secret_expires_at))
WHERE previous_secret IS NOT NULL AND previous_secret_expires_at > now();
ALTER TABLE webhook_endpoints DROP COLUMN previous_secret,
    DROP COLUMN previous_secret_expires_at;

ALTER TABLE webhook_deliveries
    ADD COLUMN queued_at timestamptz,
    ADD COLUMN round integer NOT NULL DEFAULT 1;

-- The catch-up run and reconcile read one month of every account.
CREATE INDEX quota_usage_period ON quota_usage (period);
