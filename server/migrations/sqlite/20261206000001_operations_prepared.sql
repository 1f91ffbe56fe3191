-- Operations of custodial wallets, prepared (built, sponsored, hashed) but signed only when submitted.
-- Columns: id, user_id, entry_point ("v0.7" | "v0.8"), user_op (unsigned, ERC-7769 JSON), user_op_hash,
-- summary, expires_at (Unix seconds), created_at (Unix milliseconds), sent_at (milliseconds, once submitted).
CREATE TABLE IF NOT EXISTS operations_prepared (id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    entry_point TEXT NOT NULL, user_op TEXT NOT NULL, user_op_hash TEXT NOT NULL UNIQUE, summary TEXT NOT NULL,
    expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL, sent_at BIGINT);
CREATE INDEX IF NOT EXISTS operations_prepared_by_user ON operations_prepared (user_id, created_at);
