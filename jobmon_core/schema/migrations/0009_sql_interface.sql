-- pg-jobmon schema, version 9: the SQL interface. pg_jobmon's functions (add_job, add_step,
-- update_step, close_job, fail_job, cancel_job, sql_step, sql_job, job_log_clear, show_*),
-- with its 1.4/1.5 signatures and the seed's 0.x ones, callable from SQL and PL/pgSQL.
--
-- Non-transactional, as upstream: every write is sent over a dblink connection to this same
-- database, where it commits on its own, so a caller's ROLLBACK keeps what was logged. Unlike
-- upstream, which opens a new connection per call (a backend start, ~7 ms), the connection
-- is opened once per session and kept ("pg-jobmon <schema>"), and reopened once if it broke.
-- It logs in through a foreign server (sql_loopback names it) and the caller's user mapping:
-- no password table anyone can read. install() creates both when dblink can be had; until
-- then the writers raise PJ006 saying what to run, and never log transactionally in silence.
--
-- The writes themselves are the _sql_write_* functions, run in the loopback session: the
-- same statements, checks and errors as the Python writer (jobmon_core/writer.py).
--
-- The functions run as their caller (SECURITY INVOKER) and so does the loopback session (the
-- caller's own user mapping): they can do nothing the caller's table privileges do not allow,
-- so they stay executable by PUBLIC, like upstream's, and create_roles needs no new grants.
--
-- Errors (SQLSTATE, documented in the README):
--   PJ001 no such job          PJ002 no such step (or not of that job)
--   PJ003 job already finished PJ004 the alert level has no status text
--   PJ005 not a status table   PJ006 the SQL interface is not set up (dblink, server)
--   PJ007 the loopback connection cannot be opened (user mapping, authentication)
--   22004 a NULL argument that must not be NULL; 22023 an argument out of its range

CREATE TABLE sql_loopback (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    server_name text NOT NULL
);
COMMENT ON TABLE sql_loopback IS
    'The foreign server (dblink_fdw) through which the SQL interface logs; set by install()';

-- ---------------------------------------------------------------------------------------
-- argument checks: the rules of jobmon_core/validation.py
CREATE FUNCTION _sql_require(p_value anyelement, p_what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_what USING ERRCODE = 'null_value_not_allowed';
    END IF;
END
$$;

CREATE FUNCTION _sql_check_name(p_value text, p_what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_require(p_value, p_what);
    IF p_value = '' THEN
        RAISE EXCEPTION '% must not be empty', p_what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(p_value) > 800 THEN
        RAISE EXCEPTION '% is % bytes long (UTF-8); the limit is 800 bytes, as it is indexed: '
            'shorten it and log details in a step', p_what, octet_length(p_value)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION _sql_check_id(p_value bigint, p_what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_require(p_value, p_what);
    IF p_value < 1 THEN
        RAISE EXCEPTION '% must be a positive id, not %', p_what, p_value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- A status table of this schema with alert_code and alert_text (the seed's p_config_table).
CREATE FUNCTION _sql_status_table(p_name text) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    v_table regclass;
    v_columns integer;
BEGIN
    SELECT c.oid::regclass, count(a.attname) INTO v_table, v_columns
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
       AND NOT a.attisdropped AND a.attname IN ('alert_code', 'alert_text')
     WHERE n.nspname = current_schema() AND c.relname = coalesce(p_name, 'job_status_text')
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
     GROUP BY c.oid;
    IF v_table IS NULL THEN
        RAISE EXCEPTION 'status table % is not a table of schema %', quote_literal(p_name),
            quote_literal(current_schema()) USING ERRCODE = 'PJ005',
            HINT = 'create it there with columns (alert_code integer, alert_text text)';
    END IF;
    IF v_columns < 2 THEN
        RAISE EXCEPTION 'status table % has no alert_code and alert_text columns',
            quote_literal(p_name) USING ERRCODE = 'PJ005';
    END IF;
    RETURN v_table;
END
$$;

CREATE FUNCTION _sql_status_text(p_table regclass, p_level integer) RETURNS text
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    v_text text;
BEGIN
    EXECUTE format('SELECT alert_text FROM %s WHERE alert_code = $1 LIMIT 1', p_table)
       INTO v_text USING p_level;
    RETURN v_text;
END
$$;

-- ---------------------------------------------------------------------------------------
-- the writes, run in the loopback session (each call its own transaction there)
CREATE FUNCTION _sql_write_job(p_job_id bigint, p_owner text, p_job_name text, p_pid integer)
RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_job_id bigint := coalesce(p_job_id, nextval('job_log_job_id_seq'));
BEGIN
    INSERT INTO job_log (job_id, owner, job_name, start_time, pid)
    VALUES (v_job_id, p_owner, upper(p_job_name), current_timestamp, p_pid)
    ON CONFLICT (job_id) DO NOTHING;
    IF NOT FOUND THEN
        -- a resend after a lost answer finds its own row; any other row holds the id
        PERFORM FROM job_log WHERE job_id = v_job_id AND owner = p_owner
            AND job_name = upper(p_job_name) AND pid = p_pid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'job_id % is already in job_log, written by someone else; nothing '
                'was written', v_job_id USING ERRCODE = 'unique_violation',
                HINT = 'job_log_job_id_seq is behind the table: setval() it past max(job_id)';
        END IF;
    END IF;
    RETURN v_job_id;
END
$$;

CREATE FUNCTION _sql_write_step(p_step_id bigint, p_job_id bigint, p_action text)
RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_step_id bigint := coalesce(p_step_id, nextval('job_detail_step_id_seq'));
BEGIN
    PERFORM FROM job_log WHERE job_id = p_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with job_id %: add_job() first', p_job_id USING ERRCODE = 'PJ001';
    END IF;
    INSERT INTO job_detail (job_id, step_id, action, start_time)
    VALUES (p_job_id, v_step_id, p_action, current_timestamp)
    ON CONFLICT (step_id) DO NOTHING;
    IF NOT FOUND THEN
        PERFORM FROM job_detail WHERE step_id = v_step_id AND job_id = p_job_id
            AND action = p_action;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'step_id % is already in job_detail, written by someone else; '
                'nothing was written', v_step_id USING ERRCODE = 'unique_violation',
                HINT = 'job_detail_step_id_seq is behind the table: setval() it past max(step_id)';
        END IF;
    END IF;
    RETURN v_step_id;
END
$$;

CREATE FUNCTION _sql_write_update(p_step_id bigint, p_status text, p_message text,
                                  p_job_id bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_job_id bigint;
BEGIN
    UPDATE job_detail SET end_time = current_timestamp,
           elapsed_time = date_part('epoch', current_timestamp - start_time)::real,
           status = p_status, message = p_message
     WHERE step_id = p_step_id AND (p_job_id IS NULL OR job_id = p_job_id)
    RETURNING job_id INTO v_job_id;
    IF FOUND THEN
        RETURN v_job_id;
    END IF;
    SELECT job_id INTO v_job_id FROM job_detail WHERE step_id = p_step_id;
    IF FOUND THEN
        RAISE EXCEPTION 'step % belongs to job %, not to job %', p_step_id, v_job_id, p_job_id
            USING ERRCODE = 'PJ002';
    END IF;
    RAISE EXCEPTION 'no step with step_id %: add_step() first', p_step_id USING ERRCODE = 'PJ002';
END
$$;

CREATE FUNCTION _sql_write_finish(p_job_id bigint, p_level integer, p_status_table text,
                                  p_resent boolean)
RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_table regclass := _sql_status_table(p_status_table);
    v_text text := _sql_status_text(v_table, p_level);
    v_end timestamptz;
    v_status text;
BEGIN
    UPDATE job_log SET end_time = current_timestamp, status = v_text
     WHERE job_id = p_job_id AND end_time IS NULL AND v_text IS NOT NULL
    RETURNING status INTO v_status;
    IF FOUND THEN
        RETURN v_status;
    END IF;
    SELECT end_time, status INTO v_end, v_status FROM job_log WHERE job_id = p_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with job_id %', p_job_id USING ERRCODE = 'PJ001';
    END IF;
    IF v_text IS NULL THEN
        RAISE EXCEPTION 'alert level % has no text in %', p_level, v_table USING ERRCODE = 'PJ004',
            HINT = format('insert a row (alert_code %s, alert_text ...) or use an existing level',
                          p_level);
    END IF;
    IF p_resent AND v_status = v_text THEN
        RETURN v_status;  -- the first send landed before the connection broke
    END IF;
    RAISE EXCEPTION 'job % already finished at % with status %; nothing was changed', p_job_id,
        v_end, quote_literal(v_status) USING ERRCODE = 'PJ003';
END
$$;

CREATE FUNCTION _sql_write_cancel(p_job_id bigint, p_status_table text, p_by text,
                                  p_caller_pid integer, p_resent boolean)
RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_table regclass := _sql_status_table(p_status_table);
    v_text text := _sql_status_text(v_table, 3);
    v_end timestamptz;
    v_status text;
    v_pid integer;
    v_signalled boolean := false;
    v_message text := format('Manually cancelled via call to %s.cancel_job() by %s',
                             quote_ident(current_schema()), p_by);
    v_step_id bigint;
BEGIN
    -- the job's backend, only if it is still the session that started the job (a pid reused
    -- by a later session has a later backend_start), and never the caller's own
    SELECT j.end_time, j.status, a.pid INTO v_end, v_status, v_pid
      FROM job_log AS j
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = j.pid
       AND a.backend_start <= j.start_time AND a.pid <> pg_backend_pid()
       AND a.pid <> p_caller_pid
     WHERE j.job_id = p_job_id
       FOR UPDATE OF j;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no job with job_id %', p_job_id USING ERRCODE = 'PJ001';
    END IF;
    IF v_text IS NULL THEN
        RAISE EXCEPTION 'alert level 3 has no text in %', v_table USING ERRCODE = 'PJ004';
    END IF;
    IF v_end IS NOT NULL THEN
        IF p_resent AND v_status = v_text THEN
            RETURN true;
        END IF;
        RAISE EXCEPTION 'job % already finished at % with status %; not cancelled', p_job_id,
            v_end, quote_literal(v_status) USING ERRCODE = 'PJ003';
    END IF;
    IF v_pid IS NOT NULL THEN
        v_signalled := coalesce(pg_cancel_backend(v_pid), false);
    END IF;
    SELECT max(step_id) INTO v_step_id FROM job_detail WHERE job_id = p_job_id;
    IF v_step_id IS NULL THEN
        INSERT INTO job_detail (job_id, action, start_time, end_time, elapsed_time, status,
                                message)
        VALUES (p_job_id, 'CANCEL JOB', current_timestamp, current_timestamp, 0, v_text,
                v_message);
    ELSE
        UPDATE job_detail SET end_time = current_timestamp,
               elapsed_time = date_part('epoch', current_timestamp - start_time)::real,
               status = v_text, message = v_message
         WHERE step_id = v_step_id;
    END IF;
    UPDATE job_log SET end_time = current_timestamp, status = v_text WHERE job_id = p_job_id;
    RETURN v_signalled;
END
$$;

-- ---------------------------------------------------------------------------------------
-- the kept loopback connection
CREATE FUNCTION _sql_dblink_schema() RETURNS text
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    v_schema text;
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'dblink';
    IF v_schema IS NULL THEN
        RAISE EXCEPTION 'pg-jobmon''s SQL functions log through dblink, which is not installed '
            'in database %; nothing was logged', quote_ident(current_database())
            USING ERRCODE = 'PJ006',
            HINT = 'as a superuser: CREATE EXTENSION dblink; then run `jobmon install` again '
                   '(it creates the loopback server and your user mapping)';
    END IF;
    RETURN v_schema;
END
$$;

-- the server's name, for any caller: a name is no secret, and the table stays the owner's
CREATE FUNCTION _sql_server_name() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT server_name FROM sql_loopback
$$;

CREATE FUNCTION _sql_connect(p_dblink text, p_name text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_server text := _sql_server_name();
    v_detail text;
BEGIN
    IF v_server IS NULL THEN
        RAISE EXCEPTION 'pg-jobmon''s SQL interface in schema % has no loopback server; '
            'nothing was logged', quote_ident(current_schema()) USING ERRCODE = 'PJ006',
            HINT = 'as a superuser, with dblink available, run `jobmon install` again';
    END IF;
    BEGIN
        EXECUTE format('SELECT %I.dblink_connect($1, $2)', p_dblink) USING p_name, v_server;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;  -- libpq's reason is here
        RAISE EXCEPTION 'cannot open pg-jobmon''s logging connection for role % through '
            'foreign server %: %', quote_ident(current_user), quote_ident(v_server),
            concat_ws(': ', SQLERRM, nullif(v_detail, ''))
            USING ERRCODE = 'PJ007',
            HINT = format('a superuser gives the role a user mapping with its password: '
                          '`jobmon sql-access %s` (or Jobmon.allow_sql_logging()); dblink '
                          'needs password authentication for roles that are not superusers',
                          quote_ident(current_user));
    END;
END
$$;

-- Send one call to the loopback session and return its one value (never NULL).
--
-- The connection logs in as the calling role (its user mapping) and is named after the
-- schema and that role, so a role never writes through another's connection. It is kept
-- for the session only while the caller is the session's own user: inside a SECURITY
-- DEFINER function or after SET ROLE (current_user <> session_user) it is opened for the
-- call and closed after it, whatever happens, so the session user can never reach a
-- connection logged in as someone else (dblink's functions take any open connection's name).
--
-- Whether the kept connection is open is asked in the same statement as the call, so a call
-- costs one query; dblink's schema is remembered for the session (a GUC: if a rollback
-- forgets it, it is looked up again). A kept connection found broken is reopened once and
-- the call sent again (p_resend_sql, when given: the form that recognises its own earlier
-- success); a call that must not be sent twice (p_may_resend false) raises instead.
CREATE FUNCTION _sql_remote(p_sql text, p_resend_sql text DEFAULT NULL,
                            p_may_resend boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_dblink text := current_setting('pg_jobmon.dblink_schema', true);
    v_name text := format('pg-jobmon %s/%s', to_regnamespace(quote_ident(current_schema()))::oid,
                          to_regrole(quote_ident(current_user))::oid);
    v_send text;
    v_result text;
BEGIN
    IF v_dblink IS NULL OR v_dblink = '' THEN
        v_dblink := _sql_dblink_schema();
        PERFORM set_config('pg_jobmon.dblink_schema', v_dblink, false);
    END IF;
    v_send := format('SELECT r FROM %I.dblink($1, $2, true) AS t(r text)', v_dblink);
    IF current_user <> session_user THEN  -- never left open for the session user to reuse
        PERFORM _sql_connect(v_dblink, v_name);
        BEGIN
            EXECUTE v_send INTO v_result USING v_name, p_sql;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            EXECUTE format('SELECT %I.dblink_disconnect($1)', v_dblink) USING v_name;
            RAISE;
        END;
        EXECUTE format('SELECT %I.dblink_disconnect($1)', v_dblink) USING v_name;
        RETURN v_result;
    END IF;
    BEGIN
        EXECUTE format('SELECT CASE WHEN $1 = ANY (coalesce(%1$I.dblink_get_connections(),'
                       ' ''{}'')) THEN (SELECT r FROM %1$I.dblink($1, $2, true) AS t(r text))'
                       ' END', v_dblink)
           INTO v_result USING v_name, p_sql;
        IF v_result IS NOT NULL THEN
            RETURN v_result;
        END IF;
        -- not connected yet in this session: connect below, then send
    EXCEPTION WHEN connection_exception OR admin_shutdown OR crash_shutdown THEN
        -- the kept connection broke (a restart, a terminated backend, an idle timeout)
        EXECUTE format('SELECT %I.dblink_disconnect($1)', v_dblink) USING v_name;
        IF NOT p_may_resend THEN
            RAISE;  -- the write may have landed: the caller decides
        END IF;
        p_sql := coalesce(p_resend_sql, p_sql);
    END;
    PERFORM _sql_connect(v_dblink, v_name);
    EXECUTE v_send INTO v_result USING v_name, p_sql;
    RETURN v_result;
END
$$;

-- nextval() in the caller's session, so a resend writes the same id (nextval is never rolled
-- back); in a read-only transaction the loopback session takes the id instead
CREATE FUNCTION _sql_reserve(p_sequence regclass) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('transaction_read_only')::boolean THEN
        RETURN NULL;
    END IF;
    RETURN nextval(p_sequence);
END
$$;

-- ---------------------------------------------------------------------------------------
-- the writers, with pg_jobmon's names and signatures
CREATE FUNCTION add_job(p_job_name text) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_job_id bigint;  -- reserved here, so a resend writes the same row; NULL when read-only
BEGIN
    PERFORM _sql_check_name(p_job_name, 'job name');
    v_job_id := _sql_reserve('job_log_job_id_seq');
    RETURN _sql_remote(
        format('SELECT %I._sql_write_job(%L, %L, %L, %L)', current_schema(), v_job_id,
               current_user, p_job_name, pg_backend_pid()),
        NULL, v_job_id IS NOT NULL)::bigint;
END
$$;

CREATE FUNCTION add_step(p_job_id bigint, p_action text) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_step_id bigint;  -- reserved here, so a resend writes the same row; NULL when read-only
BEGIN
    PERFORM _sql_check_id(p_job_id, 'job_id');
    PERFORM _sql_require(p_action, 'action');
    v_step_id := _sql_reserve('job_detail_step_id_seq');
    RETURN _sql_remote(format('SELECT %I._sql_write_step(%L, %L, %L)', current_schema(),
        v_step_id, p_job_id, p_action), NULL, v_step_id IS NOT NULL)::bigint;
END
$$;

CREATE FUNCTION update_step(p_step_id bigint, p_status text, p_message text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_check_id(p_step_id, 'step_id');
    PERFORM _sql_require(p_status, 'status');
    PERFORM _sql_remote(format('SELECT %I._sql_write_update(%L, %L, %L, NULL)',
        current_schema(), p_step_id, p_status, p_message));
END
$$;

-- the seed's (0.x) form: the step must belong to the job
CREATE FUNCTION update_step(p_job_id bigint, p_step_id bigint, p_status text, p_message text)
RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_check_id(p_job_id, 'job_id');
    PERFORM _sql_check_id(p_step_id, 'step_id');
    PERFORM _sql_require(p_status, 'status');
    PERFORM _sql_remote(format('SELECT %I._sql_write_update(%L, %L, %L, %L)',
        current_schema(), p_step_id, p_status, p_message, p_job_id));
END
$$;

CREATE FUNCTION _sql_finish(p_job_id bigint, p_level integer, p_status_table text) RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_call text;
BEGIN
    PERFORM _sql_check_id(p_job_id, 'job_id');
    PERFORM _sql_require(p_level, 'level');
    IF p_level < 1 THEN
        RAISE EXCEPTION 'level must be a positive alert code, not %', p_level
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_call := format('SELECT %I._sql_write_finish(%L, %L, %L, ', current_schema(), p_job_id,
                     p_level, p_status_table);
    RETURN _sql_remote(v_call || 'false)', v_call || 'true)');
END
$$;

CREATE FUNCTION close_job(p_job_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_finish(p_job_id, 1, NULL);
END
$$;

CREATE FUNCTION close_job(p_job_id bigint, p_config_table text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_require(p_config_table, 'p_config_table');
    PERFORM _sql_finish(p_job_id, 1, p_config_table);
END
$$;

CREATE FUNCTION fail_job(p_job_id bigint, p_fail_level integer DEFAULT 3) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_finish(p_job_id, p_fail_level, NULL);
END
$$;

CREATE FUNCTION fail_job(p_job_id bigint, p_config_table text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_require(p_config_table, 'p_config_table');
    PERFORM _sql_finish(p_job_id, 3, p_config_table);
END
$$;

CREATE FUNCTION _sql_cancel(p_job_id bigint, p_status_table text) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_call text;
BEGIN
    PERFORM _sql_check_id(p_job_id, 'job_id');
    v_call := format('SELECT %I._sql_write_cancel(%L, %L, %L, %L, ', current_schema(), p_job_id,
                     p_status_table, current_user, pg_backend_pid());
    RETURN _sql_remote(v_call || 'false)', v_call || 'true)')::boolean;
END
$$;

CREATE FUNCTION cancel_job(p_job_id bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RETURN _sql_cancel(p_job_id, NULL);
END
$$;

CREATE FUNCTION cancel_job(p_job_id bigint, p_config_table text) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM _sql_require(p_config_table, 'p_config_table');
    RETURN _sql_cancel(p_job_id, p_config_table);
END
$$;

-- sql_step and sql_job run the caller's SQL with the caller's search_path, as upstream's do,
-- so they cannot pin theirs: they are created here with this schema's name written into
-- every call they make.
DO $create$
BEGIN
    EXECUTE format($f$
CREATE FUNCTION %1$I.sql_step(p_job_id bigint, p_action text, p_sql text) RETURNS boolean
LANGUAGE plpgsql AS $body$
DECLARE
    v_step_id bigint;
    v_rows bigint;
BEGIN
    PERFORM %1$I._sql_require(p_sql, 'p_sql');
    v_step_id := %1$I.add_step(p_job_id, p_action);
    BEGIN
        EXECUTE p_sql;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    EXCEPTION
        WHEN query_canceled THEN  -- cancelled or timed out: say so in the step, then go on
            PERFORM %1$I.update_step(v_step_id, 'CRITICAL', 'ERROR: ' || SQLERRM);
            RAISE;
        WHEN OTHERS THEN
            PERFORM %1$I.update_step(v_step_id, 'CRITICAL', 'ERROR: ' || SQLERRM);
            RETURN false;
    END;
    PERFORM %1$I.update_step(v_step_id, 'OK', 'Rows affected: ' || v_rows);
    RETURN true;  -- unlike upstream, the job stays open
END
$body$
$f$, current_schema());

    EXECUTE format($f$
CREATE FUNCTION %1$I.sql_job(p_job_name text, p_sql text) RETURNS text
LANGUAGE plpgsql AS $body$
DECLARE
    v_job_id bigint;
    v_step_id bigint;
    v_rows bigint;
    v_failed text;
BEGIN
    PERFORM %1$I._sql_require(p_sql, 'p_sql');
    v_job_id := %1$I.add_job(p_job_name);
    v_failed := format('Job ID %%s failed. See job_detail table for more details', v_job_id);
    -- upstream's lock, keyed on the name as given
    IF NOT pg_try_advisory_lock(hashtext('sql_log'), hashtext(p_job_name)) THEN
        v_step_id := %1$I.add_step(v_job_id, 'Obtaining advisory lock for job: ' || p_job_name);
        PERFORM %1$I.update_step(v_step_id, 'OK', 'Found concurrent job. Exiting gracefully');
        PERFORM %1$I.close_job(v_job_id);
        RETURN 'Concurrent job found. Obtaining advisory lock FAILED for job: ' || p_job_name;
    END IF;
    BEGIN
        v_step_id := %1$I.add_step(v_job_id, 'Running sql: ' || quote_literal(p_sql));
        BEGIN
            EXECUTE p_sql;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
        EXCEPTION
            WHEN query_canceled THEN  -- cancelled or timed out: the job ends, then go on
                PERFORM %1$I.update_step(v_step_id, 'CRITICAL', 'ERROR: ' || SQLERRM);
                PERFORM %1$I.fail_job(v_job_id);
                RAISE;
            WHEN OTHERS THEN
                PERFORM %1$I.update_step(v_step_id, 'CRITICAL', 'ERROR: ' || SQLERRM);
                PERFORM %1$I.fail_job(v_job_id);
                PERFORM pg_advisory_unlock(hashtext('sql_log'), hashtext(p_job_name));
                RETURN v_failed;
        END;
        PERFORM %1$I.update_step(v_step_id, 'OK', 'Rows affected: ' || v_rows);
        PERFORM %1$I.close_job(v_job_id);
    EXCEPTION WHEN OTHERS OR query_canceled THEN  -- logging failed, or interrupted: unlock
        PERFORM pg_advisory_unlock(hashtext('sql_log'), hashtext(p_job_name));
        RAISE;
    END;
    PERFORM pg_advisory_unlock(hashtext('sql_log'), hashtext(p_job_name));
    RETURN format('Job logged with job id: %%s', v_job_id);
END
$body$
$f$, current_schema());
END
$create$;

-- ---------------------------------------------------------------------------------------
-- retention: one delete shared with the Python side (Reports.job_log_clear runs it in
-- batches, each committed); the SQL job_log_clear runs it in the caller's transaction, as
-- upstream, while its own job and step are logged over the loopback
CREATE FUNCTION _delete_runs_before(p_boundary timestamptz, p_own_job_id bigint,
                                    p_batch bigint)
RETURNS bigint
LANGUAGE sql SET search_path FROM CURRENT AS $$
    WITH gone AS (
        DELETE FROM job_log WHERE job_id IN (
            SELECT job_id FROM job_log
             WHERE start_time <= p_boundary AND job_id IS DISTINCT FROM p_own_job_id
             LIMIT p_batch)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

CREATE FUNCTION job_log_clear(p_interval interval) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_boundary timestamptz;
    v_title text;
    v_job_id bigint;
    v_step_id bigint;
    v_batch bigint;
    v_deleted bigint := 0;
    v_message text;
BEGIN
    PERFORM _sql_require(p_interval, 'p_interval');
    IF p_interval < interval '0' THEN
        RAISE EXCEPTION 'p_interval must be zero or more, not %', p_interval
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_boundary := now() - p_interval;
    v_title := 'Purging pg_jobmon job logs older than ' || v_boundary::text;
    v_job_id := add_job(v_title);
    BEGIN
        v_step_id := add_step(v_job_id, v_title);
        LOOP
            v_batch := _delete_runs_before(v_boundary, v_job_id, 10000);
            v_deleted := v_deleted + v_batch;
            EXIT WHEN v_batch < 10000;
        END LOOP;
        IF v_deleted > 0 THEN
            v_message := format('Deleted %s rows from job_log and associated rows in job_detail',
                                v_deleted);
        ELSE
            v_message := 'No jobs logged older than ' || v_boundary::text;
        END IF;
        RAISE NOTICE '%', v_message;
        PERFORM update_step(v_step_id, 'OK', v_message);
        PERFORM close_job(v_job_id);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        IF v_step_id IS NULL THEN
            v_step_id := add_step(v_job_id, 'EXCEPTION before first step logged');
        END IF;
        PERFORM update_step(v_step_id, 'CRITICAL', 'ERROR: ' || SQLERRM);
        PERFORM fail_job(v_job_id);
        RAISE;
    END;
END
$$;

-- ---------------------------------------------------------------------------------------
-- the reports: the Python side (jobmon_core/reports.py) reads through these same functions
CREATE FUNCTION show_job(p_name text, integer DEFAULT 10) RETURNS SETOF job_log
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM job_log WHERE job_name = upper(p_name) ORDER BY job_id DESC LIMIT $2
$$;

-- matches the pattern as given, case-insensitively (upstream upper-cases the regex itself);
-- the one-time test of '' against it rejects a broken pattern even when no row is read
CREATE FUNCTION show_job_like(p_name text, integer DEFAULT 10) RETURNS SETOF job_log
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM job_log WHERE ('' ~* p_name) IS NOT NULL AND job_name ~* p_name
     ORDER BY job_id DESC LIMIT $2
$$;

CREATE FUNCTION show_job_like(p_name text, integer, p_status text) RETURNS SETOF job_log
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM job_log WHERE ('' ~* p_name) IS NOT NULL AND job_name ~* p_name
       AND status = p_status
     ORDER BY job_id DESC LIMIT $2
$$;

CREATE FUNCTION show_job_status(p_status text, integer DEFAULT 10) RETURNS SETOF job_log
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM job_log WHERE status = p_status ORDER BY job_id DESC LIMIT $2
$$;

CREATE FUNCTION show_job_status(p_name text, p_status text, integer DEFAULT 10)
RETURNS SETOF job_log
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM job_log WHERE job_name = upper(p_name) AND status = p_status
     ORDER BY job_id DESC LIMIT $3
$$;

CREATE FUNCTION show_detail(p_id bigint) RETURNS SETOF job_detail
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT * FROM job_detail WHERE job_id = p_id ORDER BY step_id
$$;

-- the newest $2 runs of the job named p_name: runs newest first, each run's steps in order
CREATE FUNCTION show_detail(p_name text, integer DEFAULT 1) RETURNS SETOF job_detail
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT d.* FROM (SELECT job_id FROM job_log WHERE job_name = upper(p_name)
                      ORDER BY job_id DESC LIMIT $2) AS j
      JOIN job_detail AS d ON d.job_id = j.job_id
     ORDER BY d.job_id DESC, d.step_id
$$;

-- open runs whose session is still connected; a session that started after the run (its pid
-- reused) did not start it
CREATE FUNCTION show_running(integer DEFAULT 10) RETURNS SETOF job_log
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT j.* FROM job_log AS j
      JOIN pg_catalog.pg_stat_activity AS a ON a.pid = j.pid
       AND (a.backend_start IS NULL OR a.backend_start <= j.start_time)
     WHERE j.end_time IS NULL AND j.status IS NULL
     ORDER BY j.job_id DESC LIMIT $1
$$;
