-- Bundler: the mempool (every operation ever accepted, with its fate), reputation,
-- bundle transactions and the persisted nonce of each bundler key.
CREATE TABLE IF NOT EXISTS bundler_user_ops (
    hash           TEXT PRIMARY KEY,
    entry_point    TEXT NOT NULL,
    sender         TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    factory        TEXT,
    paymaster      TEXT,
    op_json        TEXT NOT NULL,
    validated_json TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'included', 'failed', 'replaced', 'dropped')),
    reason         TEXT,
    tx_hash        TEXT,
    block_number   BIGINT,
    block_hash     TEXT,
    received_at    BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS bundler_user_ops_live ON bundler_user_ops (entry_point, sender, nonce)
    WHERE status IN ('pending', 'submitted');
CREATE INDEX IF NOT EXISTS bundler_user_ops_by_status ON bundler_user_ops (entry_point, status, received_at);
CREATE INDEX IF NOT EXISTS bundler_user_ops_by_paymaster ON bundler_user_ops (paymaster, status);
CREATE INDEX IF NOT EXISTS bundler_user_ops_by_factory ON bundler_user_ops (factory, status);
CREATE INDEX IF NOT EXISTS bundler_user_ops_by_tx ON bundler_user_ops (tx_hash);

CREATE TABLE IF NOT EXISTS bundler_reputation (
    address      TEXT PRIMARY KEY,
    ops_seen     BIGINT NOT NULL,
    ops_included BIGINT NOT NULL,
    decayed_hour BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS bundler_txs (
    tx_hash      TEXT PRIMARY KEY,
    signer       TEXT NOT NULL,
    nonce        BIGINT NOT NULL,
    entry_point  TEXT NOT NULL,
    op_hashes    TEXT NOT NULL,
    raw          TEXT NOT NULL,
    calldata     TEXT NOT NULL,
    gas_limit    BIGINT NOT NULL,
    max_fee      TEXT NOT NULL,
    priority_fee TEXT NOT NULL,
    sent_block   BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'mined', 'dropped')),
    created_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS bundler_txs_pending ON bundler_txs (signer, status);

CREATE TABLE IF NOT EXISTS bundler_nonces (
    signer     TEXT PRIMARY KEY,
    next_nonce BIGINT NOT NULL
);
