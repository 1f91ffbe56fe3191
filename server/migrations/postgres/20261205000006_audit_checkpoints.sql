-- Audit checkpoints: the trail's head (sequence number and hash) anchored in PLOG from the `anchor`
-- key, so that a trail rewritten consistently (every hash recomputed) no longer matches the chain.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    tx_hash    TEXT,
    block      BIGINT,
    created_at BIGINT NOT NULL
);
