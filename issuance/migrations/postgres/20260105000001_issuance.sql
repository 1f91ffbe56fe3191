-- Activity mirror and issuance (DESIGN.md §7). Amounts and badge ids are decimal text (uint256).

-- Activities as received; unique per caller and Idempotency-Key.
CREATE TABLE IF NOT EXISTS issuance_activities (
    id              TEXT PRIMARY KEY,
    caller          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'batched', 'submitted', 'confirmed', 'failed')),
    batch_id        TEXT,
    leaf            TEXT,
    proof           TEXT,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (caller, idempotency_key)
);
CREATE INDEX IF NOT EXISTS issuance_activities_by_batch ON issuance_activities (batch_id);

-- Work for the mirror worker, written in the activity's transaction.
CREATE TABLE IF NOT EXISTS issuance_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    activity_id TEXT NOT NULL UNIQUE REFERENCES issuance_activities (id)
);

-- What each activity issues. A badge carries once_key (user and badge id): at most one per user.
CREATE TABLE IF NOT EXISTS issuance_items (
    id          BIGSERIAL PRIMARY KEY,
    activity_id TEXT NOT NULL REFERENCES issuance_activities (id),
    kind        TEXT NOT NULL CHECK (kind IN ('token', 'badge', 'burn', 'log')),
    amount      TEXT,
    badge_id    TEXT,
    once_key    TEXT UNIQUE,
    tx_id       TEXT
);
CREATE INDEX IF NOT EXISTS issuance_items_by_activity ON issuance_items (activity_id);

-- Per user and period counters (attendance per month).
CREATE TABLE IF NOT EXISTS issuance_counters (
    user_id TEXT NOT NULL,
    period  TEXT NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (user_id, period)
);

-- Merkle batches; id is the PLOG batch id (hex bytes32).
CREATE TABLE IF NOT EXISTS issuance_batches (
    id         TEXT PRIMARY KEY,
    root       TEXT NOT NULL,
    leaf_count BIGINT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The batch's transactions: planned (calldata), signed (raw kept before sending), submitted, mined, failed.
CREATE TABLE IF NOT EXISTS issuance_txs (
    id           TEXT PRIMARY KEY,
    batch_id     TEXT NOT NULL REFERENCES issuance_batches (id),
    ordinal      BIGINT NOT NULL,
    target       TEXT NOT NULL,
    calldata     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('planned', 'signed', 'submitted', 'mined', 'failed')),
    sender       TEXT,
    nonce        BIGINT,
    raw          TEXT,
    tx_hash      TEXT,
    block_number BIGINT,
    gas_used     BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS issuance_txs_by_status ON issuance_txs (status);

-- The next nonce of each sending key.
CREATE TABLE IF NOT EXISTS issuance_nonces (
    sender     TEXT PRIMARY KEY,
    next_nonce BIGINT NOT NULL
);

-- Caches built from chain events by the indexer.
CREATE TABLE IF NOT EXISTS token_balance_cache (
    account TEXT PRIMARY KEY,
    balance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS badge_index (
    account  TEXT NOT NULL,
    badge_id TEXT NOT NULL,
    amount   TEXT NOT NULL,
    PRIMARY KEY (account, badge_id)
);
-- Blocks the indexer applied (number, hash), for reorg detection; the highest is the cursor.
CREATE TABLE IF NOT EXISTS issuance_indexed_blocks (
    number BIGINT PRIMARY KEY,
    hash   TEXT NOT NULL
);
