-- Stored forecasts and the projected-quota alerts raised from them.

-- One forecast per account, UTC day, horizon and requested model: the nightly job writes the
-- default one, the API writes others on demand, and either is served for the rest of that day.
-- `monthly_limit` is the limit it was projected against: after a plan change it is not served.
CREATE TABLE forecasts (
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    generated_on    date NOT NULL,
    horizon_days    smallint NOT NULL CHECK (horizon_days BETWEEN 1 AND 366),
    requested_model text NOT NULL,
    monthly_limit   bigint,
    generated_at    timestamptz NOT NULL DEFAULT now(),
    body            jsonb NOT NULL,
    PRIMARY KEY (account_id, generated_on, horizon_days, requested_model)
);

CREATE INDEX forecasts_generated_on ON forecasts (generated_on);

-- At most one alert per account, month and kind: raised the first night a forecast projects it,
-- never repeated that month. `delivered_at` is for whatever delivers them (email, webhook).
CREATE TABLE usage_alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    kind            text NOT NULL CHECK (kind IN ('projected_80_percent', 'projected_exhaustion')),
    raised_at       timestamptz NOT NULL DEFAULT now(),
    monthly_limit   bigint NOT NULL,
    used            bigint NOT NULL,
    projected_total bigint NOT NULL,
    exhaustion_date date,
    delivered_at    timestamptz,
    UNIQUE (account_id, month, kind)
);

CREATE INDEX usage_alerts_undelivered ON usage_alerts (raised_at) WHERE delivered_at IS NULL;
