-- A pg_jobmon-style job written in PL/pgSQL, as pg_partman, mimeo and pg_cron users write
-- them: each step is logged through the SQL interface, non-transactionally, so when the job
-- fails and its work rolls back, the steps logged so far stay in jobmon.job_detail.
--
--   psql -f sql_examples/nightly_rollup.sql          -- creates the tables and the function
--   SELECT nightly_rollup();                          -- a good run
--   SELECT nightly_rollup(p_fail => true);            -- fails at its last step, rolls back

CREATE TABLE IF NOT EXISTS demo_orders (id serial PRIMARY KEY, amount numeric NOT NULL);
CREATE TABLE IF NOT EXISTS demo_daily_totals (day date PRIMARY KEY, total numeric NOT NULL);

CREATE OR REPLACE FUNCTION nightly_rollup(p_fail boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_job  bigint;
    v_step bigint;
    v_rows bigint;
BEGIN
    v_job := jobmon.add_job('nightly rollup');

    v_step := jobmon.add_step(v_job, 'load the day''s orders');
    INSERT INTO demo_orders (amount) SELECT (random() * 100)::numeric(8, 2)
      FROM generate_series(1, 250);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    PERFORM jobmon.update_step(v_step, 'OK', format('%s orders', v_rows));

    v_step := jobmon.add_step(v_job, 'roll up into demo_daily_totals');
    INSERT INTO demo_daily_totals (day, total)
    SELECT current_date, sum(amount) FROM demo_orders
    ON CONFLICT (day) DO UPDATE SET total = excluded.total;
    PERFORM jobmon.update_step(v_step, 'OK', 'totals written');

    v_step := jobmon.add_step(v_job, 'check the totals');
    IF p_fail THEN
        RAISE EXCEPTION 'total does not match the source system';
    END IF;
    PERFORM jobmon.update_step(v_step, 'OK', 'totals match');
    PERFORM jobmon.close_job(v_job);
EXCEPTION WHEN OTHERS THEN
    -- upstream's pattern: record the error, fail the job, re-raise (the work rolls back,
    -- the log does not)
    IF v_job IS NULL THEN
        v_job := jobmon.add_job('nightly rollup');
        v_step := jobmon.add_step(v_job, 'Exception occurred before job logging started');
    ELSIF v_step IS NULL THEN
        v_step := jobmon.add_step(v_job, 'EXCEPTION before first step logged');
    END IF;
    PERFORM jobmon.update_step(v_step, 'CRITICAL', 'ERROR: ' || SQLERRM);
    PERFORM jobmon.fail_job(v_job);
    RAISE;
END
$$;
