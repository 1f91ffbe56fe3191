-- The transaction sender: every transaction an HSM key sends, recorded before it is broadcast.

-- The next nonce of each sending key (never behind the chain's pending count when a send is recorded).
CREATE TABLE IF NOT EXISTS sender_nonces (
    sender     TEXT PRIMARY KEY,
    next_nonce BIGINT NOT NULL
);

-- One row per send: the caller's id (one send per id, ever), the call, its nonce and its fate.
CREATE TABLE IF NOT EXISTS sender_txs (
    id          TEXT PRIMARY KEY,
    sender      TEXT NOT NULL,
    nonce       BIGINT NOT NULL,
    target      TEXT NOT NULL,
    value       TEXT NOT NULL,
    calldata    TEXT NOT NULL,
    gas_limit   BIGINT NOT NULL,
    context     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'included', 'cancelled', 'dropped', 'rejected')),
    error       TEXT,
    mined_hash  TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS sender_txs_nonce ON sender_txs (sender, nonce);
CREATE INDEX IF NOT EXISTS sender_txs_open ON sender_txs (sender, finished_at);

-- Every signed transaction of a send: the first, its fee bumps and a cancellation, as raw bytes.
CREATE TABLE IF NOT EXISTS sender_attempts (
    tx_hash      TEXT PRIMARY KEY,
    send_id      TEXT NOT NULL REFERENCES sender_txs (id),
    kind         TEXT NOT NULL CHECK (kind IN ('call', 'cancel')),
    raw          TEXT NOT NULL,
    max_fee      TEXT NOT NULL,
    priority_fee TEXT NOT NULL,
    sent_block   BIGINT,
    sent_at      BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sender_attempts_of ON sender_attempts (send_id, created_at);
