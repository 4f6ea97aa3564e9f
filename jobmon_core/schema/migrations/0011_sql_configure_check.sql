-- pg-jobmon schema, version 11: configure_check() in SQL, so SQL users configure the checks,
-- "runs too long" limits included, through the rules the Python API uses (Python's
-- Jobmon.configure_check checks its arguments, then calls this same function).
--
-- Create or replace: limits left out are off again. Bad input raises 22004 / 22023; the
-- duration rules are also CHECK constraints of job_check_config (migration 0010), so a plain
-- INSERT or UPDATE is refused the same way (23514).
--
--   SELECT * FROM jobmon.configure_check('nightly load', '25 hours', '49 hours',
--                                        p_warn_duration => '2 hours',
--                                        p_error_duration => '4 hours',
--                                        p_duration_factor => 2);
CREATE FUNCTION configure_check(
    p_job_name text,
    p_warn_threshold interval,
    p_error_threshold interval,
    p_sensitivity integer DEFAULT 0,
    p_escalate integer DEFAULT NULL,
    p_active boolean DEFAULT true,
    p_warn_duration interval DEFAULT NULL,
    p_error_duration interval DEFAULT NULL,
    p_duration_factor double precision DEFAULT NULL,
    p_duration_percentile double precision DEFAULT NULL,
    p_duration_runs integer DEFAULT NULL
)
RETURNS job_check_config
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_config job_check_config;
BEGIN
    IF p_job_name IS NULL OR p_warn_threshold IS NULL OR p_error_threshold IS NULL THEN
        RAISE EXCEPTION 'configure_check: job name, warn and error thresholds are required'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_warn_threshold <= interval '0' OR p_error_threshold < p_warn_threshold THEN
        RAISE EXCEPTION 'configure_check: thresholds must be longer than zero, error (%) not '
            'shorter than warn (%)', p_error_threshold, p_warn_threshold
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_sensitivity IS NULL OR p_sensitivity NOT BETWEEN 0 AND 32767 THEN
        RAISE EXCEPTION 'configure_check: sensitivity must be 0..32767, not %', p_sensitivity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_escalate < 1 THEN
        RAISE EXCEPTION 'configure_check: escalate must be NULL or 1 or more, not %', p_escalate
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_duration_factor IS NULL
       AND (p_duration_percentile IS NOT NULL OR p_duration_runs IS NOT NULL) THEN
        RAISE EXCEPTION 'configure_check: p_duration_percentile and p_duration_runs need '
            'p_duration_factor' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO job_check_config AS c
           (job_name, warn_threshold, error_threshold, active, sensitivity, escalate,
            warn_duration, error_duration, duration_factor, duration_percentile, duration_runs)
    VALUES (upper(p_job_name), p_warn_threshold, p_error_threshold, coalesce(p_active, true),
            p_sensitivity, p_escalate, p_warn_duration, p_error_duration, p_duration_factor,
            coalesce(p_duration_percentile, 0.5), coalesce(p_duration_runs, 20))
    ON CONFLICT (job_name) DO UPDATE
       SET (warn_threshold, error_threshold, active, sensitivity, escalate, warn_duration,
            error_duration, duration_factor, duration_percentile, duration_runs)
         = ROW(excluded.warn_threshold, excluded.error_threshold, excluded.active,
               excluded.sensitivity, excluded.escalate, excluded.warn_duration,
               excluded.error_duration, excluded.duration_factor,
               excluded.duration_percentile, excluded.duration_runs)
    RETURNING c.* INTO v_config;
    RETURN v_config;
END
$$;
