-- The audit trail is append-only: UPDATE and DELETE raise, whatever the role (the table owner too). Run
-- the service as a role that is granted INSERT and SELECT only and does not own the table, so that it
-- cannot drop this trigger either (docs/operations.md).
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
