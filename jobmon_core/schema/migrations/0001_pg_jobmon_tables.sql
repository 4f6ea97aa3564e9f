-- pg-jobmon schema, version 1: the pg_jobmon 1.4 log and monitoring tables.
--
-- Table, column, sequence, index and constraint names are exactly upstream's, so existing
-- SQL (reports, check_postgres queries, hand-written updates) works unchanged. All ids are
-- bigint. Any column pg-jobmon adds later comes after the upstream columns.
-- Runs with search_path set to the target schema: names are deliberately unqualified.

CREATE SEQUENCE job_log_job_id_seq START 1 INCREMENT 1 NO MINVALUE NO MAXVALUE CACHE 1;

-- One row per job run. status is NULL while running, then the text of an alert code.
CREATE TABLE job_log (
    job_id bigint NOT NULL DEFAULT nextval('job_log_job_id_seq'),
    owner text NOT NULL,
    job_name text NOT NULL,
    start_time timestamptz NOT NULL,
    end_time timestamptz,
    status text,
    pid integer NOT NULL,
    CONSTRAINT job_log_job_id_pkey PRIMARY KEY (job_id)
);
ALTER SEQUENCE job_log_job_id_seq OWNED BY job_log.job_id;
CREATE INDEX job_log_job_name_idx ON job_log (job_name);
CREATE INDEX job_log_start_time_idx ON job_log (start_time);
CREATE INDEX job_log_status_idx ON job_log (status);
CREATE INDEX job_log_pid_idx ON job_log (pid);

CREATE SEQUENCE job_detail_step_id_seq START 1 INCREMENT 1 NO MINVALUE NO MAXVALUE CACHE 1;

-- One row per step. status and message are free text; only job_log.status is monitored.
CREATE TABLE job_detail (
    job_id bigint NOT NULL,
    step_id bigint NOT NULL DEFAULT nextval('job_detail_step_id_seq'),
    action text NOT NULL,
    start_time timestamptz NOT NULL,
    end_time timestamptz,
    elapsed_time real,
    status text,
    message text,
    CONSTRAINT job_detail_step_id_pkey PRIMARY KEY (step_id),
    CONSTRAINT job_detail_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES job_log (job_id) ON DELETE CASCADE
);
ALTER SEQUENCE job_detail_step_id_seq OWNED BY job_detail.step_id;
CREATE INDEX job_detail_job_id_idx ON job_detail (job_id);

-- Failures since each job name's last success (maintained by the job_log trigger).
CREATE TABLE job_check_log (
    job_id bigint NOT NULL,
    job_name text NOT NULL,
    alert_code integer NOT NULL DEFAULT 3
);
-- Ours, not upstream's: the triggers look rows up by name on every failure and success.
CREATE INDEX job_check_log_job_name_idx ON job_check_log (job_name, alert_code);

-- Jobs with their own monitoring thresholds. job_name is stored as in job_log (upper case).
CREATE TABLE job_check_config (
    job_name text NOT NULL,
    warn_threshold interval NOT NULL,
    error_threshold interval NOT NULL,
    active boolean NOT NULL DEFAULT false,
    sensitivity smallint NOT NULL DEFAULT 0,
    escalate integer,
    CONSTRAINT job_check_config_job_name_pkey PRIMARY KEY (job_name)
);

-- Alert code <-> the text stored in job_log.status. Users may rename texts and add codes.
CREATE TABLE job_status_text (
    alert_code integer NOT NULL,
    alert_text text NOT NULL,
    CONSTRAINT job_status_text_alert_code_pkey PRIMARY KEY (alert_code)
);
INSERT INTO job_status_text (alert_code, alert_text) VALUES
    (1, 'OK'),
    (2, 'WARNING'),
    (3, 'CRITICAL');

-- The name the original README's example query joins against.
CREATE VIEW job_alert_nagios (error_code, error_text) AS
    SELECT alert_code, alert_text FROM job_status_text;
