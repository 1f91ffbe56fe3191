-- Owner-key rotations of custodial wallets (officers): the successor key, the operation that changes
-- the account's owner on-chain, and where it is. At most one pending rotation per wallet.
CREATE TABLE IF NOT EXISTS owner_rotations (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    old_key_id   TEXT NOT NULL,
    new_key_id   TEXT NOT NULL,
    old_owner    TEXT NOT NULL,
    new_owner    TEXT NOT NULL,
    user_op_hash TEXT,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'failed')),
    reason       TEXT,
    requested_by TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS owner_rotations_open ON owner_rotations (user_id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS owner_rotations_by_user ON owner_rotations (user_id, created_at);
