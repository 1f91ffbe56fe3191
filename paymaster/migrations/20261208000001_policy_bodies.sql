-- Policies live in the database: the body officers change (JSON of the policy), the configuration's
-- version last applied, a version counter and who changed it last. Each sponsorship names the counters
-- it was counted in (",global:daily,sender:never,"), so that settling or releasing it moves exactly
-- those, whatever the policy's limits became since. A sponsorship reserved before this migration names
-- none: it stays counted at its reserved gas until its period ends (never more than it may spend).
ALTER TABLE paymaster_policies ADD COLUMN body TEXT;
ALTER TABLE paymaster_policies ADD COLUMN config_body TEXT;
ALTER TABLE paymaster_policies ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE paymaster_policies ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE paymaster_policies ADD COLUMN updated_by TEXT NOT NULL DEFAULT '';
ALTER TABLE paymaster_sponsorships ADD COLUMN counters TEXT NOT NULL DEFAULT ',';
