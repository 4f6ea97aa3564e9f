-- pg-jobmon schema, version 10: "runs too long" alerts (issue #15).
--
-- A job may now have a maximum run duration at the warning and at the critical level, and
-- optionally a limit learned from its own recent runs ("slower than usual"). The job's
-- latest run is judged: still open and running past a limit, check_job_status reports it as
-- RUNNING_TOO_LONG; finished but past a limit, as RAN_TOO_LONG, until a later run starts.
--
-- Everything is opt-in. The new columns come after pg_jobmon 1.4's, so INSERTs written for
-- pg_jobmon (with or without a column list) keep working; with warn_duration,
-- error_duration and duration_factor NULL (their default) check_job_status returns exactly
-- what version 6 returned, row for row and text for text. The new rows come from their own
-- function, check_job_durations(), and are added after the RUNNING and BLOCKED relabelling,
-- which never touches them; they are not failures: job_check_log, sensitivity and
-- escalation do not see them.
--
-- Cost: per active job with a duration setting, one backward probe of
-- job_log_job_name_start_time_idx (its latest run) and, with duration_factor, a bounded
-- range of the same index (its duration_runs previous runs, each a heap fetch: about 1 us
-- per run looked at, so duration_runs is at most 100). Jobs without a duration setting cost
-- nothing more. Measured by bench/check_durations.py.

ALTER TABLE job_check_config
    ADD COLUMN warn_duration interval,
    ADD COLUMN error_duration interval,
    ADD COLUMN duration_factor double precision,
    ADD COLUMN duration_percentile double precision NOT NULL DEFAULT 0.5,
    ADD COLUMN duration_runs integer NOT NULL DEFAULT 20,
    ADD CONSTRAINT job_check_config_warn_duration_check
        CHECK (warn_duration > interval '0'),
    ADD CONSTRAINT job_check_config_error_duration_check
        CHECK (error_duration > interval '0'
               AND (warn_duration IS NULL OR error_duration >= warn_duration)),
    ADD CONSTRAINT job_check_config_duration_factor_check
        CHECK (duration_factor >= 1 AND duration_factor <= 1000),
    ADD CONSTRAINT job_check_config_duration_percentile_check
        CHECK (duration_percentile > 0 AND duration_percentile <= 1),
    ADD CONSTRAINT job_check_config_duration_runs_check
        CHECK (duration_runs BETWEEN 5 AND 100);

COMMENT ON COLUMN job_check_config.warn_duration IS
    'pg-jobmon: a run longer than this is a WARNING (RUNNING_TOO_LONG / RAN_TOO_LONG); NULL: no limit';
COMMENT ON COLUMN job_check_config.error_duration IS
    'pg-jobmon: a run longer than this is CRITICAL (RUNNING_TOO_LONG / RAN_TOO_LONG); NULL: no limit';
COMMENT ON COLUMN job_check_config.duration_factor IS
    'pg-jobmon: "slower than usual": a run longer than duration_factor x the duration_percentile of the job''s last duration_runs runs (successful ones) is a WARNING; NULL: off';
COMMENT ON COLUMN job_check_config.duration_percentile IS
    'pg-jobmon: the percentile (0..1, 0.5 = median) of recent durations that duration_factor multiplies';
COMMENT ON COLUMN job_check_config.duration_runs IS
    'pg-jobmon: how many previous runs "slower than usual" looks at (5..100); it needs 5 successful ones';

-- Runs too long: one row per active job whose latest run is past one of its duration limits
-- (RUNNING_TOO_LONG while open, RAN_TOO_LONG once finished), as check_job_status rows.
-- check_job_status includes them; callable alone as well. "now" is the transaction start.
CREATE FUNCTION check_job_durations()
RETURNS TABLE (alert_code integer, alert_status text, job_name text, alert_text text)
LANGUAGE plpgsql
STABLE
SET search_path FROM CURRENT
-- The planner cannot know duration_runs, so on a large log its estimate passes
-- jit_above_cost and each check paid ~15 ms of JIT compilation for ~2 ms of work (measured
-- at 10^6 rows); these few index probes never gain from JIT.
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    -- Nothing to plan or run while no active job has a duration setting.
    IF NOT EXISTS (SELECT FROM job_check_config c
                    WHERE c.active AND (c.warn_duration IS NOT NULL
                                        OR c.error_duration IS NOT NULL
                                        OR c.duration_factor IS NOT NULL)) THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH
    clock AS (SELECT current_timestamp AS now),
    -- The latest run of each active job with a duration setting, whatever the window (a
    -- run that started before it is still the latest run), and how long it took or, still
    -- open, has run so far.
    timed AS (
        SELECT c.job_name, c.warn_duration, c.error_duration, c.duration_factor,
               c.duration_percentile, c.duration_runs, r.start_time, r.end_time,
               coalesce(r.end_time, clock.now) - r.start_time AS took
          FROM job_check_config c
          CROSS JOIN clock
          JOIN LATERAL (
                SELECT j.start_time, j.end_time FROM job_log j
                 WHERE j.job_name = c.job_name
                 ORDER BY j.start_time DESC LIMIT 1) r ON true
         WHERE c.active
           AND (c.warn_duration IS NOT NULL OR c.error_duration IS NOT NULL
                OR c.duration_factor IS NOT NULL)
    ),
    -- "Slower than usual": duration_factor x the duration_percentile of the durations of
    -- the successful runs among the duration_runs runs before it (a bounded index range,
    -- whatever the failures), once at least 5 of them succeeded.
    limits AS (
        SELECT t.*, u.usual,
               CASE WHEN u.counted >= 5 THEN u.usual * t.duration_factor END AS usual_limit
          FROM timed t
          LEFT JOIN LATERAL (
                SELECT percentile_cont(t.duration_percentile)
                           WITHIN GROUP (ORDER BY h.end_time - h.start_time) AS usual,
                       count(*) AS counted
                  FROM (SELECT p.start_time, p.end_time, p.status FROM job_log p
                         WHERE t.duration_factor IS NOT NULL
                           AND p.job_name = t.job_name AND p.start_time < t.start_time
                         ORDER BY p.start_time DESC LIMIT t.duration_runs) h
                 WHERE h.end_time IS NOT NULL
                   AND h.status = (SELECT s.alert_text FROM job_status_text s
                                    WHERE s.alert_code = 1)) u ON true
    ),
    -- The worst limit the run is past: error_duration (3), else warn_duration (2), else
    -- the usual limit (2).
    over AS (
        SELECT m.*,
               CASE WHEN m.took > m.error_duration THEN 3 ELSE 2 END AS code,
               CASE WHEN m.took > m.error_duration
                    THEN 'longer than its error_duration of ' || m.error_duration
                    WHEN m.took > m.warn_duration
                    THEN 'longer than its warn_duration of ' || m.warn_duration
                    ELSE 'slower than usual: more than ' || m.duration_factor || ' x '
                         || date_trunc('milliseconds', m.usual) || ' (percentile '
                         || m.duration_percentile || ' of its last ' || m.duration_runs
                         || ' runs, successful ones)'
               END AS why
          FROM limits m
         WHERE m.took > m.error_duration OR m.took > m.warn_duration OR m.took > m.usual_limit
    )
    SELECT o.code,
           CASE WHEN o.end_time IS NULL THEN 'RUNNING_TOO_LONG' ELSE 'RAN_TOO_LONG' END,
           o.job_name,
           CASE WHEN o.end_time IS NULL
                THEN 'Running for ' || date_trunc('second', o.took) || ', ' || o.why
                     || '. Started: ' || o.start_time
                ELSE 'Last run took ' || date_trunc('milliseconds', o.took) || ', ' || o.why
                     || '. Ended: ' || o.end_time
           END
      FROM over o;
END
$$;

COMMENT ON FUNCTION check_job_durations() IS
    'pg-jobmon: RUNNING_TOO_LONG / RAN_TOO_LONG rows (alert_code, alert_status, job_name, alert_text) for jobs whose latest run is past warn_duration, error_duration or duration_factor x its usual duration';

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
    ),
    -- F. Ours (version 10): runs too long, from their own function (above), which costs
    --    one look-up when no active job has a duration setting.
    too_long AS (SELECT * FROM check_job_durations())
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
    SELECT * FROM too_long
    UNION ALL
    SELECT 1, 'OK', NULL, 'All jobs run successfully'
     WHERE NOT EXISTS (SELECT FROM problems) AND NOT EXISTS (SELECT FROM too_long)
    ORDER BY 1 DESC, 3, 2;
END
$$;

COMMENT ON FUNCTION check_job_status(interval) IS
    'pg_jobmon 1.4 check: one row per problem (alert_code, alert_status, job_name, alert_text), worst first; (1, OK, NULL, All jobs run successfully) when healthy; pg-jobmon adds RUNNING_TOO_LONG and RAN_TOO_LONG for jobs with duration limits';
