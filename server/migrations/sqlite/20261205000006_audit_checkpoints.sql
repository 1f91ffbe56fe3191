-- Audit checkpoints: the trail's head (sequence number and hash) anchored in PLOG from the `anchor`
-- key, so that a trail rewritten consistently (every hash recomputed) no longer matches the chain.
-- Each anchored root chains the previous checkpoint's: root = keccak256(previous root ‖ seq ‖ hash).
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    root       TEXT NOT NULL,
    tx_hash    TEXT,
    block      BIGINT,
    created_at BIGINT NOT NULL
);
