-- pg-jobmon schema, version 5: the monitoring triggers run with their owner's rights.
--
-- The job_log trigger keeps job_check_log up to date and the job_check_log trigger reads
-- job_check_config to escalate. Running as the caller, they would need every role that
-- closes or fails a job to be able to read the monitoring configuration and write the
-- monitoring state directly. As SECURITY DEFINER functions they run as their owner (the role
-- that installed the schema), so a least-privilege writer role (see jobmon_core/roles.py)
-- needs only INSERT and UPDATE on the log tables.
--
-- Safe as definer functions: both were created with SET search_path FROM CURRENT while the
-- installer's search_path was "<this schema>, pg_temp", so every name they use resolves in
-- pg_catalog or this schema, never in a schema or temporary table of the caller's. They can
-- only be called as triggers; EXECUTE is taken from PUBLIC all the same, as PostgreSQL's
-- documentation advises for every SECURITY DEFINER function (firing a trigger does not
-- check EXECUTE). The tables are unchanged: the pg_jobmon 1.4 layout stays as it is.

ALTER FUNCTION job_monitor() SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION job_monitor() FROM PUBLIC;

ALTER FUNCTION job_check_log_escalate_trig() SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION job_check_log_escalate_trig() FROM PUBLIC;
