-- pg-jobmon schema, version 4: run keys, so an orchestrator run is one job and a task try
-- one step, whichever process logs first.
--
-- job_log.run_key (e.g. 'airflow:<dag_id>/<run_id>') and job_detail.step_key (e.g.
-- '<task_id>[<map_index>]#<try>') are ours, after the upstream columns; NULL for jobs and
-- steps logged without one, so pg_jobmon 1.4 SQL is unaffected.

ALTER TABLE job_log ADD COLUMN run_key text;
CREATE UNIQUE INDEX job_log_run_key_key ON job_log (run_key) WHERE run_key IS NOT NULL;

ALTER TABLE job_detail ADD COLUMN step_key text;
CREATE UNIQUE INDEX job_detail_step_key_key ON job_detail (job_id, step_key)
    WHERE step_key IS NOT NULL;

-- Get or create the job of a run, in one call and without a race: concurrent callers with
-- the same key all get the same job_id (the unique index arbitrates; the loser's INSERT
-- waits for the winner to commit, then its SELECT, a new snapshot, sees the row).
CREATE FUNCTION add_run_job(p_job_name text, p_run_key text, p_owner text, p_pid integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_job_id bigint;
BEGIN
    LOOP
        -- look first: a lookup of an existing run takes no value from the sequence
        SELECT job_id INTO v_job_id FROM job_log WHERE run_key = p_run_key;
        EXIT WHEN v_job_id IS NOT NULL;
        INSERT INTO job_log (owner, job_name, start_time, pid, run_key)
        VALUES (coalesce(p_owner, current_user), upper(p_job_name), clock_timestamp(),
                coalesce(p_pid, pg_backend_pid()), p_run_key)
        ON CONFLICT (run_key) WHERE run_key IS NOT NULL DO NOTHING
        RETURNING job_id INTO v_job_id;
        IF v_job_id IS NULL THEN
            SELECT job_id INTO v_job_id FROM job_log WHERE run_key = p_run_key;
        END IF;
        EXIT WHEN v_job_id IS NOT NULL;  -- else the row was deleted in between: try again
    END LOOP;
    RETURN v_job_id;
END
$$;

-- The same for a keyed step of a job (a task try polled many times is still one step).
CREATE FUNCTION add_run_step(p_job_id bigint, p_step_key text, p_action text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_step_id bigint;
BEGIN
    LOOP
        SELECT step_id INTO v_step_id FROM job_detail
         WHERE job_id = p_job_id AND step_key = p_step_key;
        EXIT WHEN v_step_id IS NOT NULL;
        INSERT INTO job_detail (job_id, action, start_time, step_key)
        VALUES (p_job_id, p_action, clock_timestamp(), p_step_key)
        ON CONFLICT (job_id, step_key) WHERE step_key IS NOT NULL DO NOTHING
        RETURNING step_id INTO v_step_id;
        IF v_step_id IS NULL THEN
            SELECT step_id INTO v_step_id FROM job_detail
             WHERE job_id = p_job_id AND step_key = p_step_key;
        END IF;
        EXIT WHEN v_step_id IS NOT NULL;
    END LOOP;
    RETURN v_step_id;
END
$$;
