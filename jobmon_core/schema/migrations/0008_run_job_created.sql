-- pg-jobmon schema, version 8: the get-or-create of a run's job says whether it created it.
--
-- add_job(run_key=...) tells the plugins about a new job (the jobmon_job_started hook) like
-- any add_job, but only the process that created the job may: every other process of the
-- run (each task of an Airflow DAG run calls it) finds the same job again. Only the insert
-- knows which one won, so the function returns (job_id, created) in the same round trip.
--
-- add_run_job (version 4) keeps its signature and result for the callers it has; it now
-- returns the job_id of this function, so the two doors get and create jobs one way.

CREATE FUNCTION find_or_add_run_job(
    p_job_name text, p_run_key text, p_owner text, p_pid integer,
    OUT job_id bigint, OUT created boolean
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    created := false;
    LOOP
        -- look first: a lookup of an existing run takes no value from the sequence
        SELECT l.job_id INTO job_id FROM job_log AS l WHERE l.run_key = p_run_key;
        EXIT WHEN job_id IS NOT NULL;
        -- the unique index arbitrates between concurrent callers: the loser's insert waits
        -- for the winner to commit and does nothing; its next SELECT (a new snapshot) sees
        -- the winner's row
        INSERT INTO job_log AS l (owner, job_name, start_time, pid, run_key)
        VALUES (coalesce(p_owner, current_user), upper(p_job_name), clock_timestamp(),
                coalesce(p_pid, pg_backend_pid()), p_run_key)
        ON CONFLICT (run_key) WHERE run_key IS NOT NULL DO NOTHING
        RETURNING l.job_id INTO job_id;
        IF job_id IS NOT NULL THEN
            created := true;
            RETURN;
        END IF;
        SELECT l.job_id INTO job_id FROM job_log AS l WHERE l.run_key = p_run_key;
        EXIT WHEN job_id IS NOT NULL;  -- else the row was deleted in between: try again
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION add_run_job(p_job_name text, p_run_key text, p_owner text,
                                       p_pid integer)
RETURNS bigint
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    SELECT job_id FROM find_or_add_run_job(p_job_name, p_run_key, p_owner, p_pid)
$$;
