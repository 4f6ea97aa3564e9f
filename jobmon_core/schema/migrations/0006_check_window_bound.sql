-- pg-jobmon schema, version 6: check_job_status stays an index look-up for a configured job
-- that has not run inside the history window.
--
-- The probe for a job's newest completed run was bounded by start time only. For a job with
-- no run inside the window, PostgreSQL walked the (job_name, end_time) index backwards
-- through that job's whole history looking for a qualifying row: the check grew with the
-- log (measured by bench/: tens of ms at 10^6 rows). A run that started inside the window
-- also ended inside it, so bounding the end time as well keeps the probe a short range scan.
-- Same results; only the plan changes.

CREATE OR REPLACE FUNCTION check_job_status(p_history interval)
RETURNS TABLE (alert_code integer, alert_status text, job_name text, alert_text text)
LANGUAGE plpgsql
STABLE
SET search_path FROM CURRENT
AS $$
#variable_conflict use_column
DECLARE
    v_longest interval;
BEGIN
    IF p_history IS NULL THEN
        RAISE EXCEPTION 'check_job_status: the history interval must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Upstream's guard: the window must cover the longest active threshold.
    SELECT greatest(max(c.error_threshold), max(c.warn_threshold)) INTO v_longest
      FROM job_check_config c
     WHERE c.active;
    IF v_longest IS NOT NULL AND p_history < v_longest THEN
        RAISE EXCEPTION 'Input argument must be greater than or equal to the longest threshold in job_check_config table'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('The longest active threshold is %s; call check_job_status() without an argument to use it.', v_longest);
    END IF;

    RETURN QUERY
    WITH
    -- "now" is the transaction start, as upstream's CURRENT_TIMESTAMP.
    clock AS (SELECT current_timestamp AS now, current_timestamp - p_history AS since),
    -- A. Jobs with no job_check_config row at all (active or not): three failures in a row
    --    at the same level. The text always says 3, as upstream.
    strikes AS (
        SELECT l.alert_code, 'FAILED_RUN'::text AS alert_status, l.job_name,
               '3 consecutive ' || t.alert_text || ' runs' AS alert_text
          FROM job_check_log l
          JOIN job_status_text t ON t.alert_code = l.alert_code
         WHERE NOT EXISTS (SELECT FROM job_check_config c WHERE c.job_name = l.job_name)
         GROUP BY l.job_name, l.alert_code, t.alert_text
        HAVING count(*) > 2
    ),
    -- B. Configured, active jobs: more failures at one level than their sensitivity.
    sensitive AS (
        SELECT l.alert_code, 'FAILED_RUN'::text, l.job_name,
               count(*) || ' ' || t.alert_text || ' run(s)'
          FROM job_check_log l
          JOIN job_check_config c ON c.job_name = l.job_name AND c.active
          JOIN job_status_text t ON t.alert_code = l.alert_code
         GROUP BY l.job_name, l.alert_code, t.alert_text, c.sensitivity
        HAVING count(*) > c.sensitivity
    ),
    -- C. Configured, active jobs: the latest start inside the window (two index probes each).
    latest AS (
        SELECT c.job_name, c.warn_threshold, c.error_threshold,
               s.start_time AS last_start, e.end_time AS last_end
          FROM job_check_config c
          CROSS JOIN clock
          LEFT JOIN LATERAL (
                SELECT j.start_time FROM job_log j
                 WHERE j.job_name = c.job_name AND j.start_time > clock.since
                 ORDER BY j.start_time DESC LIMIT 1) s ON true
          LEFT JOIN LATERAL (
                SELECT j.end_time FROM job_log j
                 WHERE j.job_name = c.job_name AND j.end_time IS NOT NULL
                   AND j.end_time > clock.since
                   AND j.start_time > clock.since
                 ORDER BY j.end_time DESC LIMIT 1) e ON true
         WHERE c.active
    ),
    -- Late (measured from the latest *start*) or never run inside the window.
    missing AS (
        SELECT CASE WHEN l.last_start IS NULL OR clock.now - l.last_start > l.error_threshold
                    THEN 3 ELSE 2 END,
               'MISSING'::text, l.job_name,
               CASE WHEN l.last_end IS NULL
                    THEN 'Has not completed a run since highest configured monitoring time period'
                    ELSE 'Last completed run: ' || l.last_end END
          FROM latest l CROSS JOIN clock
         WHERE l.last_start IS NULL OR clock.now - l.last_start > l.warn_threshold
    ),
    problems AS (
        SELECT * FROM strikes UNION ALL SELECT * FROM sensitive UNION ALL SELECT * FROM missing
    ),
    -- Open runs inside the window of the jobs with problems, whose pid is a live backend.
    -- Ours, not upstream's: a backend that started after the run did not start it (the pid
    -- was reused). backend_start is visible only with pg_read_all_stats (or to the same
    -- role); without it the pid alone decides, as upstream.
    open_runs AS (
        SELECT o.job_name, o.start_time, o.pid
          FROM (SELECT DISTINCT p.job_name FROM problems p) n
          CROSS JOIN clock
          JOIN job_log o ON o.job_name = n.job_name AND o.end_time IS NULL
                        AND o.start_time > clock.since
          JOIN pg_catalog.pg_stat_activity a ON a.pid = o.pid
                        AND (a.backend_start IS NULL OR a.backend_start <= o.start_time)
    ),
    -- D. RUNNING: an open run of an active configured job, older than its smaller threshold.
    running AS (
        SELECT DISTINCT r.job_name, l.last_end
          FROM open_runs r
          JOIN latest l ON l.job_name = r.job_name
          CROSS JOIN clock
         WHERE clock.now - r.start_time >= least(l.warn_threshold, l.error_threshold)
    ),
    -- E. BLOCKED (wins over RUNNING): an open run waiting for a lock; no config needed.
    blocked AS (
        SELECT DISTINCT r.job_name
          FROM open_runs r
         WHERE EXISTS (SELECT FROM pg_catalog.pg_locks k WHERE k.pid = r.pid AND NOT k.granted)
    )
    SELECT p.alert_code,
           CASE WHEN b.job_name IS NOT NULL THEN 'BLOCKED'
                WHEN r.job_name IS NOT NULL THEN 'RUNNING'
                ELSE p.alert_status END,
           p.job_name,
           CASE WHEN b.job_name IS NOT NULL
                THEN 'Another transaction has a lock that blocking this job from completing'
                WHEN r.job_name IS NOT NULL
                THEN coalesce('Currently running. Last completed run: ' || r.last_end,
                              'Currently running. Job has not had a completed run within configured monitoring time period.')
                ELSE p.alert_text END
      FROM problems p
      LEFT JOIN running r ON r.job_name = p.job_name
      LEFT JOIN blocked b ON b.job_name = p.job_name
    UNION ALL
    SELECT 1, 'OK', NULL, 'All jobs run successfully'
     WHERE NOT EXISTS (SELECT FROM problems)
    ORDER BY 1 DESC, 3, 2;
END
$$;

COMMENT ON FUNCTION check_job_status(interval) IS
    'pg_jobmon 1.4 check: one row per problem (alert_code, alert_status, job_name, alert_text), worst first; (1, OK, NULL, All jobs run successfully) when healthy';

