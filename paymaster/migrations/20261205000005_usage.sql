-- Running budget counters: operations and gas per policy, scope (global, or one sender), reset and
-- period start (unix seconds), kept up to date as sponsorships are reserved, settled and released, so
-- a reservation reads its counters instead of counting rows.
CREATE TABLE IF NOT EXISTS paymaster_usage (
    policy  TEXT NOT NULL,
    scope   TEXT NOT NULL,
    subject TEXT NOT NULL,
    reset   TEXT NOT NULL,
    period  BIGINT NOT NULL,
    ops     BIGINT NOT NULL,
    gas     BIGINT NOT NULL,
    PRIMARY KEY (policy, scope, subject, reset, period)
);
