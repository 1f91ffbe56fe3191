-- What an audit entry is about beyond its target (amount, activity id, refusal code): JSON, '' when none.
ALTER TABLE audit_log ADD COLUMN details TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor, seq);
CREATE INDEX IF NOT EXISTS audit_log_by_target ON audit_log (target, seq);
