-- Paymaster: every sponsorship signed (reserved against its policy's budgets until the operation's
-- receipt settles it, or its signature expires unused and releases it), a lock row per policy, and
-- the block the settler has read UserOperationEvents up to.
CREATE TABLE IF NOT EXISTS paymaster_sponsorships (
    id           TEXT PRIMARY KEY,
    policy       TEXT NOT NULL,
    entry_point  TEXT NOT NULL,
    sender       TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    max_gas      BIGINT NOT NULL,
    gas_used     BIGINT,
    status       TEXT NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
    valid_until  BIGINT NOT NULL,
    user_op_hash TEXT,
    tx_hash      TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS paymaster_sponsorships_by_policy ON paymaster_sponsorships (policy, created_at);
CREATE INDEX IF NOT EXISTS paymaster_sponsorships_by_sender ON paymaster_sponsorships (policy, sender, created_at);
CREATE INDEX IF NOT EXISTS paymaster_sponsorships_open ON paymaster_sponsorships (status, valid_until);

CREATE TABLE IF NOT EXISTS paymaster_policies (
    id TEXT PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS paymaster_cursor (
    id         INTEGER PRIMARY KEY,
    next_block BIGINT NOT NULL
);
