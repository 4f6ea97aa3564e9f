-- pg-jobmon schema, version 7: the alert levels the notifiers last heard, kept in the schema.
--
-- A check tells the jobmon_alerts_found hook which jobs flipped (OK to CRITICAL, CRITICAL
-- back to OK...) since the previous check. Kept in a process's memory, that previous check
-- died with the process: every JobmonCheckOperator run and every `jobmon check --notify`
-- started from nothing and notified the same problems again. Kept here, every checker of
-- the schema (Airflow tasks, cron, Nagios on several hosts) compares with the same levels;
-- jobmon_core/alert_memory.py reads and writes them under a lock on this table, in the
-- transaction that also runs the check, so two checks at the same moment report a flip once.
--
-- A row is a problem: a job whose worst alert code was above 1 (OK) when the notifiers last
-- accepted a change; a healthy job has no row. Rows change only when every notifier took
-- the change, so a failed notification is repeated at the next check.

CREATE TABLE job_alert_state (
    job_name text UNIQUE,  -- NULL: a problem without a job name (check_job_status has none)
    alert_code integer NOT NULL CHECK (alert_code > 1),
    changed_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE job_alert_state IS
    'pg-jobmon: the worst alert code per job that the notifier plugins last heard (problems only); written by checks, not by jobs';
