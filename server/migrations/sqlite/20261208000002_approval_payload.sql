-- What a dual-control request asks for beyond its action and target (a policy change carries the
-- new policy and the version it replaces), shown to the approving officer.
ALTER TABLE approvals ADD COLUMN payload TEXT;
