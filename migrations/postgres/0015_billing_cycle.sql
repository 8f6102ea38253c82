-- Billing and onboarding as processes (src/processes/billing).
--
-- Read models (the billing projector): the subscription's metering period and its last
-- failed payment; usage per metering period (a call that ends after its period, before the
-- close, counts in the next one, so usage is kept per period, not per subscription).
ALTER TABLE billing_subscriptions ADD COLUMN metering_period_start BIGINT;
ALTER TABLE billing_subscriptions ADD COLUMN metering_period_end BIGINT;
ALTER TABLE billing_subscriptions ADD COLUMN payment_failed_invoice TEXT;
ALTER TABLE billing_subscriptions ADD COLUMN payment_failed_amount_cents BIGINT;
ALTER TABLE billing_subscriptions ADD COLUMN payment_failed_currency TEXT;
ALTER TABLE billing_subscriptions ADD COLUMN payment_failed_at BIGINT;

CREATE TABLE billing_period_usage (
    subscription_id  TEXT NOT NULL,
    period_start     BIGINT NOT NULL,
    organization_id  TEXT,
    calls            BIGINT NOT NULL DEFAULT 0,
    minutes          BIGINT NOT NULL DEFAULT 0,
    overage_minutes  BIGINT NOT NULL DEFAULT 0,
    reported_minutes BIGINT NOT NULL DEFAULT 0,
    -- Usage thresholds reached, as "80,100".
    thresholds       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (subscription_id, period_start)
);

-- The usage-metering starter's own state (never rebuilt): each organization's billing
-- subscription as of the starter's checkpoint, so a call is metered on the subscription
-- that was live when it ended.
CREATE TABLE billing_accounts (
    organization_id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    status          TEXT NOT NULL,
    position        BIGINT NOT NULL
);
