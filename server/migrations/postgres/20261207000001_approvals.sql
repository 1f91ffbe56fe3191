-- Dual control: a sensitive operation requested by one officer, approved by another, then executed.
-- state: pending (expired once past expires_at) | approved (running) | executed | failed. Times in Unix
-- milliseconds; result is JSON (what it did, or {"error"}).
CREATE TABLE IF NOT EXISTS approvals (id TEXT PRIMARY KEY, action TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
    approved_by TEXT, approved_at BIGINT, result TEXT, finished_at BIGINT);
CREATE INDEX IF NOT EXISTS approvals_by_time ON approvals (requested_at);
