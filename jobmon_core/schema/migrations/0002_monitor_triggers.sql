-- pg-jobmon schema, version 2: the monitoring triggers.
--
-- The monitoring state lives in the database, so a job_log row changed by hand in SQL, by
-- an old pg_jobmon client or by pg-jobmon's writer gets exactly the same side effects.
-- Functions are pinned to this schema with SET search_path FROM CURRENT.

-- AFTER UPDATE ON job_log: map the new status text to its alert code. Code 1 (success)
-- forgets every recorded failure of the job name; any other known code records one more.
-- It fires on every update, whatever changed: failing a job twice counts twice, as upstream.
CREATE FUNCTION job_monitor() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_code integer;
BEGIN
    -- When several codes share a text, the lowest wins (upstream leaves it arbitrary).
    SELECT alert_code INTO v_code
      FROM job_status_text
     WHERE alert_text = NEW.status
     ORDER BY alert_code
     LIMIT 1;

    IF v_code IS NULL THEN
        RETURN NULL;  -- running (NULL status), ESCALATED, or a text with no code
    ELSIF v_code = 1 THEN
        DELETE FROM job_check_log WHERE job_name = NEW.job_name;
    ELSE
        INSERT INTO job_check_log (job_id, job_name, alert_code)
        VALUES (NEW.job_id, NEW.job_name, v_code);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_job_monitor
    AFTER UPDATE ON job_log
    FOR EACH ROW EXECUTE FUNCTION job_monitor();

-- BEFORE INSERT ON job_check_log: alert escalation, for job names whose job_check_config
-- row has a non-NULL escalate (whether or not the row is active, as upstream).
--  * the new alert is raised to the highest code already recorded for the name;
--  * when the rows at that highest code, plus this one, reach `escalate`, and the code is
--    below the highest code in job_status_text, the alert goes up by exactly one, a step
--    'ALERT ESCALATION' / 'ESCALATE' explains it, and the run's status becomes 'ESCALATED'.
-- The first failure never escalates (there are no rows yet), as upstream.
CREATE FUNCTION job_check_log_escalate_trig() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_escalate integer;
    v_top_code integer;
    v_top_count bigint;
    v_max_code integer;
    v_old_code integer;
BEGIN
    SELECT escalate INTO v_escalate FROM job_check_config WHERE job_name = NEW.job_name;
    IF v_escalate IS NULL THEN
        RETURN NEW;
    END IF;

    -- Concurrent failures of one job name must count each other.
    PERFORM pg_advisory_xact_lock(hashtext('pg-jobmon escalate'), hashtext(NEW.job_name));

    SELECT alert_code, count(*) INTO v_top_code, v_top_count
      FROM job_check_log
     WHERE job_name = NEW.job_name
     GROUP BY alert_code
     ORDER BY alert_code DESC
     LIMIT 1;

    IF v_top_code > NEW.alert_code THEN
        NEW.alert_code := v_top_code;
    END IF;

    IF v_top_count + 1 >= v_escalate THEN
        SELECT max(alert_code) INTO v_max_code FROM job_status_text;
        IF NEW.alert_code < v_max_code THEN
            v_old_code := NEW.alert_code;
            NEW.alert_code := NEW.alert_code + 1;

            -- Upstream's exact message, its spelling included: monitoring rules match on it.
            INSERT INTO job_detail (job_id, action, start_time, end_time, elapsed_time, status, message)
            SELECT NEW.job_id, 'ALERT ESCALATION', clock_timestamp(), clock_timestamp(), 0,
                   'ESCALATE',
                   format('Job has alerted at level %s in excess of the escalate value configured'
                          ' for this job (%s). Alert code value has been escaleted to: %s',
                          v_old_code, v_escalate, NEW.alert_code)
             WHERE EXISTS (SELECT 1 FROM job_log WHERE job_id = NEW.job_id);

            UPDATE job_log SET status = 'ESCALATED' WHERE job_id = NEW.job_id;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_check_log_escalate_trig
    BEFORE INSERT ON job_check_log
    FOR EACH ROW EXECUTE FUNCTION job_check_log_escalate_trig();
