"""The SQL interface (migration 9): pg_jobmon's functions called from SQL and PL/pgSQL.

Every write goes over the session's kept dblink connection and commits on its own, so it
survives the caller's ROLLBACK; the rows, checks and errors are the Python writer's.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from jobmon_core import Jobmon
from jobmon_core.sql_interface import APPLICATION_NAME

from .tables import Rows


@pytest.fixture
def caller(dsn: str, jm: Jobmon) -> Iterator[psycopg.Connection]:
    """A session of a SQL user: the jobmon schema on its search_path, transactions its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        _use_schema(conn, jm.schema)
        yield conn


def _use_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))


def _value(conn: psycopg.Connection, query: str, params: list[object] | None = None) -> object:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _loopback_pids(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname ="
        " current_database()",
        [APPLICATION_NAME],
    ).fetchall()
    return [r[0] for r in rows]


def test_a_logged_job_survives_the_callers_rollback(caller, rows: Rows):
    caller.execute("BEGIN")
    job = _value(caller, "SELECT add_job('nightly load')")
    step = _value(caller, "SELECT add_step(%s, 'copy rows')", [job])
    caller.execute("SELECT update_step(%s, 'OK', 'copied 3 rows')", [step])
    caller.execute("ROLLBACK")

    (logged,) = rows("job_log")
    assert logged["job_id"] == job
    assert logged["job_name"] == "NIGHTLY LOAD"
    assert logged["pid"] == caller.info.backend_pid  # the caller's pid, not the loopback's
    assert logged["owner"] == _value(caller, "SELECT current_user")
    assert logged["status"] is None
    assert logged["end_time"] is None
    (logged_step,) = rows("job_detail")
    assert (logged_step["step_id"], logged_step["action"]) == (step, "copy rows")
    assert (logged_step["status"], logged_step["message"]) == ("OK", "copied 3 rows")
    caller.execute("SELECT close_job(%s)", [job])
    assert rows("job_log")[0]["status"] == "OK"


def test_a_plpgsql_job_keeps_its_steps_when_its_transaction_aborts(caller, rows: Rows):
    # upstream's recommended exception handling, as pg_partman and mimeo write it
    caller.execute(
        """
        CREATE FUNCTION nightly() RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            v_job bigint;
            v_step bigint;
        BEGIN
            v_job := add_job('PLPGSQL NIGHTLY');
            v_step := add_step(v_job, 'create table');
            CREATE TABLE nightly_out (x int);
            PERFORM update_step(v_step, 'OK', 'created');
            v_step := add_step(v_job, 'divide');
            PERFORM 1 / 0;
            PERFORM update_step(v_step, 'OK', 'divided');
            PERFORM close_job(v_job);
        EXCEPTION WHEN OTHERS THEN
            IF v_step IS NULL THEN
                v_step := add_step(v_job, 'EXCEPTION before first step logged');
            END IF;
            PERFORM update_step(v_step, 'CRITICAL', 'ERROR: ' || SQLERRM);
            PERFORM fail_job(v_job);
            RAISE;
        END
        $$"""
    )
    with pytest.raises(pg_errors.DivisionByZero):
        caller.execute("SELECT nightly()")

    (job,) = rows("job_log")
    assert (job["job_name"], job["status"]) == ("PLPGSQL NIGHTLY", "CRITICAL")
    steps = [(s["action"], s["status"], s["message"]) for s in rows("job_detail")]
    assert steps == [
        ("create table", "OK", "created"),
        ("divide", "CRITICAL", "ERROR: division by zero"),
    ]
    assert _value(caller, "SELECT to_regclass('nightly_out')") is None  # the work rolled back
    # the failure reached the monitoring tables through the trigger, as for any writer
    assert rows("job_check_log")[0]["job_name"] == "PLPGSQL NIGHTLY"


def test_python_and_sql_leave_the_same_rows(caller, jm: Jobmon, rows: Rows):
    def scenario_python() -> None:
        job = jm.add_job("same scenario")
        jm.update_step(jm.add_step(job, "first"), "OK", "one")
        jm.update_step(jm.add_step(job, "second"), "WARNING", None)
        jm.fail_job(job, 2)
        other = jm.add_job("same scenario 2")
        jm.close_job(other)

    def scenario_sql() -> None:
        job = _value(caller, "SELECT add_job('same scenario')")
        step = _value(caller, "SELECT add_step(%s, 'first')", [job])
        caller.execute("SELECT update_step(%s, 'OK', 'one')", [step])
        step = _value(caller, "SELECT add_step(%s, 'second')", [job])
        caller.execute("SELECT update_step(%s, 'WARNING', NULL)", [step])
        caller.execute("SELECT fail_job(%s, 2)", [job])
        other = _value(caller, "SELECT add_job('same scenario 2')")
        caller.execute("SELECT close_job(%s)", [other])

    def logged() -> tuple[list[tuple], list[tuple], list[tuple]]:
        jobs = [
            (j["job_name"], j["owner"], j["status"], j["end_time"] is not None)
            for j in rows("job_log")
        ]
        steps = [
            (s["action"], s["status"], s["message"], s["elapsed_time"] is not None)
            for s in rows("job_detail")
        ]
        checks = [(c["job_name"], c["alert_code"]) for c in rows("job_check_log")]
        return jobs, steps, checks

    scenario_python()
    by_python = logged()
    rows.execute("DELETE FROM job_check_log; DELETE FROM job_log")
    scenario_sql()
    assert logged() == by_python
    assert by_python[2] == [("SAME SCENARIO", 2)]


def test_the_reports_are_the_same_rows_from_sql_and_python(caller, jm: Jobmon):
    for name in ("report a", "report a", "report b"):
        job = jm.add_job(name)
        jm.update_step(jm.add_step(job, "s1"), "OK", "fine")
        jm.close_job(job)
    running = _value(caller, "SELECT add_job('report running')")
    jm.fail_job(jm.add_job("report b"))

    def sql_rows(query: str, params: list[object]) -> list[tuple]:
        return [tuple(r) for r in caller.execute(query, params).fetchall()]

    def py_rows(records: list) -> list[tuple]:
        return [tuple(vars(r).values()) for r in records]

    assert sql_rows("SELECT * FROM show_job(%s)", ["report a"]) == py_rows(jm.show_job("report a"))
    assert sql_rows("SELECT * FROM show_job_like(%s, 2)", ["REPORT"]) == py_rows(
        jm.show_job_like("REPORT", 2)
    )
    assert sql_rows("SELECT * FROM show_job_status(%s)", ["CRITICAL"]) == py_rows(
        jm.show_job_status("CRITICAL")
    )
    assert sql_rows("SELECT * FROM show_job_status(%s, %s)", ["report b", "OK"]) == py_rows(
        jm.show_job_status("OK", name="report b")
    )
    assert sql_rows("SELECT * FROM show_detail(%s, 2)", ["report a"]) == py_rows(
        jm.show_detail("report a", 2)
    )
    first = jm.show_job("report a")[-1].job_id
    assert sql_rows("SELECT * FROM show_detail(%s::bigint)", [first]) == py_rows(
        jm.show_detail(first)
    )
    shown = sql_rows("SELECT * FROM show_running()", [])
    assert [r[0] for r in shown] == [running]
    assert shown == py_rows(jm.show_running())


def test_the_seeds_four_argument_update_step(caller, rows: Rows):
    job = _value(caller, "SELECT add_job('seed style')")
    step = _value(caller, "SELECT add_step(%s, 'one')", [job])
    caller.execute("SELECT update_step(%s, %s, 'OK', 'seed signature')", [job, step])
    assert rows("job_detail")[0]["message"] == "seed signature"
    other = _value(caller, "SELECT add_job('another')")
    with pytest.raises(psycopg.Error) as caught:
        caller.execute("SELECT update_step(%s, %s, 'OK', 'wrong job')", [other, step])
    assert caught.value.sqlstate == "PJ002"
    assert f"step {step} belongs to job {job}, not to job {other}" in str(caught.value)
    assert rows("job_detail")[0]["message"] == "seed signature"


def test_custom_status_tables(caller, rows: Rows):
    rows.execute(
        "CREATE TABLE my_status (alert_code int, alert_text text);"
        " INSERT INTO my_status VALUES (1, 'FINE'), (2, 'HMM'), (3, 'BAD')"
    )
    closed = _value(caller, "SELECT add_job('custom close')")
    caller.execute("SELECT close_job(%s, 'my_status')", [closed])
    failed = _value(caller, "SELECT add_job('custom fail')")
    caller.execute("SELECT fail_job(%s, 'my_status')", [failed])
    cancelled = _value(caller, "SELECT add_job('custom cancel')")
    assert _value(caller, "SELECT cancel_job(%s, 'my_status')", [cancelled]) is False
    assert [(j["job_id"], j["status"]) for j in rows("job_log")] == [
        (closed, "FINE"),
        (failed, "BAD"),
        (cancelled, "BAD"),
    ]
    other = _value(caller, "SELECT add_job('no such table')")
    with pytest.raises(psycopg.Error) as caught:
        caller.execute("SELECT close_job(%s, 'nope')", [other])
    assert caught.value.sqlstate == "PJ005"


@pytest.mark.parametrize(
    ("statement", "sqlstate", "message"),
    [
        ("SELECT add_step(999999, 'x')", "PJ001", "no job with job_id 999999: add_job() first"),
        ("SELECT update_step(999999, 'OK', 'x')", "PJ002", "no step with step_id 999999"),
        ("SELECT close_job(999999)", "PJ001", "no job with job_id 999999"),
        ("SELECT fail_job({job}, 7)", "PJ004", "alert level 7 has no text"),
        ("SELECT add_job(NULL)", "22004", "job name must not be NULL"),
        ("SELECT add_job('')", "22023", "job name must not be empty"),
        ("SELECT add_job(repeat('x', 801))", "22023", "the limit is 800 bytes"),
        ("SELECT update_step({step}, NULL, 'x')", "22004", "status must not be NULL"),
        ("SELECT add_step(0, 'x')", "22023", "job_id must be a positive id"),
        ("SELECT fail_job({job}, 0)", "22023", "level must be a positive alert code"),
    ],
)
def test_errors_are_sql_errors_with_their_own_sqlstate(caller, statement, sqlstate, message):
    job = _value(caller, "SELECT add_job('errors')")
    step = _value(caller, "SELECT add_step(%s, 'a step')", [job])
    with pytest.raises(psycopg.Error) as caught:
        caller.execute(statement.format(job=job, step=step))
    assert caught.value.sqlstate == sqlstate
    assert message in str(caught.value)


def test_a_finished_job_is_not_rewritten(caller, rows: Rows):
    job = _value(caller, "SELECT add_job('finished')")
    caller.execute("SELECT close_job(%s)", [job])
    for again in ("SELECT close_job(%s)", "SELECT fail_job(%s)", "SELECT cancel_job(%s)"):
        with pytest.raises(psycopg.Error) as caught:
            caller.execute(again, [job])
        assert caught.value.sqlstate == "PJ003"
    assert rows("job_log")[0]["status"] == "OK"


def test_an_update_step_with_a_null_message_stores_null(caller, rows: Rows):
    job = _value(caller, "SELECT add_job('null message')")
    step = _value(caller, "SELECT add_step(%s, 'one')", [job])
    caller.execute("SELECT update_step(%s, 'OK', NULL)", [step])  # upstream: EXECUTE null
    assert (rows("job_detail")[0]["status"], rows("job_detail")[0]["message"]) == ("OK", None)


def test_sql_step_and_sql_job(caller, rows: Rows):
    rows.execute("CREATE TABLE work_t (x int); INSERT INTO work_t VALUES (1), (2), (3)")
    job = _value(caller, "SELECT add_job('sql steps')")
    update = f"UPDATE {rows.schema}.work_t SET x = x + 1"
    assert _value(caller, "SELECT sql_step(%s, 'bump', %s)", [job, update]) is True
    assert _value(caller, "SELECT sql_step(%s, 'break', 'SELECT 1/0')", [job]) is False
    steps = [(s["action"], s["status"], s["message"]) for s in rows("job_detail")]
    assert steps == [
        ("bump", "OK", "Rows affected: 3"),
        ("break", "CRITICAL", "ERROR: division by zero"),
    ]
    assert rows("job_log")[0]["end_time"] is None  # unlike upstream, the job stays open

    done = _value(caller, "SELECT sql_job('sql job ok', %s)", [update])
    assert str(done).startswith("Job logged with job id: ")
    failed = _value(caller, "SELECT sql_job('sql job bad', 'SELECT 1/0')")
    assert str(failed).endswith("failed. See job_detail table for more details")
    statuses = {j["job_name"]: j["status"] for j in rows("job_log")}
    assert statuses["SQL JOB OK"] == "OK"
    assert statuses["SQL JOB BAD"] == "CRITICAL"


def test_sql_step_runs_with_the_callers_search_path(caller, rows: Rows):
    caller.execute("CREATE TEMP TABLE mine (x int)")  # found only through the caller's path
    job = _value(caller, "SELECT add_job('search path')")
    assert _value(caller, "SELECT sql_step(%s, 'insert', 'INSERT INTO mine VALUES (1)')", [job])
    assert rows("job_detail")[0]["message"] == "Rows affected: 1"


def test_sql_job_says_when_a_concurrent_run_holds_its_lock(caller, dsn: str, jm: Jobmon, rows):
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('sql_log'), hashtext('locked job'))")
        answer = _value(caller, "SELECT sql_job('locked job', 'SELECT 1')")
    assert answer == "Concurrent job found. Obtaining advisory lock FAILED for job: locked job"
    (step,) = rows("job_detail")
    assert (step["action"], step["message"]) == (
        "Obtaining advisory lock for job: locked job",
        "Found concurrent job. Exiting gracefully",
    )
    assert rows("job_log")[0]["status"] == "OK"


def test_job_log_clear_from_sql(caller, rows: Rows):
    old = _value(caller, "SELECT add_job('old run')")
    caller.execute("SELECT close_job(%s)", [old])
    rows.execute("UPDATE job_log SET start_time = now() - interval '3 days'")
    keep = _value(caller, "SELECT add_job('new run')")
    caller.execute("SELECT job_log_clear('1 day')")
    names = [j["job_name"] for j in rows("job_log")]
    assert names[0] == "NEW RUN"
    assert names[1].startswith("PURGING PG_JOBMON JOB LOGS OLDER THAN")
    assert next(j["job_id"] for j in rows("job_log")) == keep
    (step,) = rows("job_detail")
    assert step["message"] == "Deleted 1 rows from job_log and associated rows in job_detail"
    assert rows("job_log")[1]["status"] == "OK"


def test_a_read_only_transaction_still_logs(caller, rows: Rows):
    caller.execute("BEGIN READ ONLY")
    job = _value(caller, "SELECT add_job('read only')")
    caller.execute("SELECT update_step(add_step(%s, 'look'), 'OK', 'seen')", [job])
    caller.execute("SELECT close_job(%s)", [job])
    caller.execute("COMMIT")
    assert rows("job_log")[0]["status"] == "OK"


def test_one_kept_connection_per_session_reopened_once_when_broken(caller, admin, rows: Rows):
    before = set(_loopback_pids(admin))
    job = _value(caller, "SELECT add_job('kept')")
    for n in range(20):
        caller.execute("SELECT update_step(add_step(%s, %s), 'OK', NULL)", [job, f"s{n}"])
    mine = set(_loopback_pids(admin)) - before
    assert len(mine) == 1, "one loopback connection for all 41 calls"

    admin.execute("SELECT pg_terminate_backend(%s)", [mine.pop()])
    time.sleep(0.2)
    caller.execute("SELECT update_step(add_step(%s, 'after the break'), 'OK', NULL)", [job])
    assert rows("job_detail")[-1]["action"] == "after the break"
    assert len(set(_loopback_pids(admin)) - before) == 1


def test_cancel_job_stops_a_session_running_a_logged_plpgsql_job(
    caller, dsn: str, jm: Jobmon, rows: Rows
):
    caller.execute(
        """
        CREATE FUNCTION long_job() RETURNS void LANGUAGE plpgsql AS $$
        DECLARE v_job bigint;
        BEGIN
            v_job := add_job('long job');
            PERFORM add_step(v_job, 'sleeping');
            PERFORM pg_sleep(60);
        END
        $$"""
    )
    outcome: dict[str, BaseException] = {}

    def run_it() -> None:
        with psycopg.connect(dsn, autocommit=True) as session:
            _use_schema(session, jm.schema)
            try:
                session.execute("SELECT long_job()")
            except psycopg.Error as exc:
                outcome["error"] = exc

    runner = threading.Thread(target=run_it)
    runner.start()
    deadline = time.monotonic() + 20
    while not rows("job_detail") and time.monotonic() < deadline:
        time.sleep(0.05)
    (job,) = rows("job_log")
    assert _value(caller, "SELECT cancel_job(%s)", [job["job_id"]]) is True
    runner.join(20)
    assert not runner.is_alive()
    assert isinstance(outcome.get("error"), pg_errors.QueryCanceled)
    (job,) = rows("job_log")
    assert job["status"] == "CRITICAL"
    (step,) = rows("job_detail")
    assert step["status"] == "CRITICAL"
    assert step["message"].startswith("Manually cancelled via call to ")


def test_a_writer_role_logs_through_its_own_user_mapping(dsn: str, jm: Jobmon, admin, rows):
    jm.create_roles()
    login = f"etl_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE jobmon_writer").format(
            sql.Identifier(login), sql.Literal(password)
        )
    )
    try:
        etl_dsn = make_conninfo(dsn, user=login, password=password)
        with psycopg.connect(etl_dsn, autocommit=True) as etl:
            _use_schema(etl, jm.schema)
            with pytest.raises(psycopg.Error) as caught:  # no mapping yet: says what to run
                etl.execute("SELECT add_job('etl job')")
            assert caught.value.sqlstate == "PJ007"
            assert "jobmon sql-access" in (caught.value.diag.message_hint or "")

        jm.allow_sql_logging(login, password)
        with psycopg.connect(etl_dsn, autocommit=True) as etl:
            _use_schema(etl, jm.schema)
            etl.execute("BEGIN")
            job = _value(etl, "SELECT add_job('etl job')")
            etl.execute("SELECT update_step(add_step(%s, 'load'), 'OK', 'loaded')", [job])
            etl.execute("ROLLBACK")
            etl.execute("SELECT close_job(%s)", [job])
            # the password is not in a table the role can read but in its user mapping
            seen = etl.execute(
                "SELECT umoptions FROM pg_user_mappings WHERE usename <> current_user"
            ).fetchall()
            assert all(options is None for (options,) in seen)
        (logged,) = rows("job_log")
        assert (logged["owner"], logged["status"]) == (login, "OK")
        assert rows("job_detail")[0]["message"] == "loaded"
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_without_dblink_install_succeeds_and_the_writers_say_what_to_run(
    pg_server, dsn: str, caplog
):
    """A schema owner that may not create extensions (dblink is not trusted) installs into
    a database without dblink: install() succeeds with a warning, the Python side logs, and
    SQL logging refuses with PJ006 instead of logging transactionally."""
    owner, password = f"owner_{secrets.token_hex(4)}", secrets.token_hex(12)
    database = f"nodblink_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as su:
        su.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(owner), sql.Literal(password)
            )
        )
        su.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
    try:
        owner_dsn = make_conninfo(pg_server.dsn_for(database), user=owner, password=password)
        jm = Jobmon(owner_dsn, schema="jobmon")
        with caplog.at_level("WARNING"):
            jm.install()
        assert "needs dblink" in caplog.text
        assert "CREATE EXTENSION dblink" in caplog.text
        jm.close_job(jm.add_job("python still logs"))
        jm.close()
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as caught:
                conn.execute("SELECT jobmon.add_job('from sql')")
            assert caught.value.sqlstate == "PJ006"
            assert "CREATE EXTENSION dblink" in (caught.value.diag.message_hint or "")
            names = conn.execute("SELECT job_name FROM jobmon.job_log").fetchall()
            assert names == [("PYTHON STILL LOGS",)]
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as su:
            su.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


def test_install_is_idempotent_and_keeps_one_loopback_server(dsn: str, jm: Jobmon, admin):
    jm.install()
    Jobmon(dsn, schema=f"{jm.schema}_second").install()
    try:
        servers = admin.execute(
            "SELECT srvname FROM pg_foreign_server WHERE srvname = 'pg_jobmon_loopback'"
        ).fetchall()
        assert servers == [("pg_jobmon_loopback",)]
    finally:
        admin.execute(
            sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(f"{jm.schema}_second"))
        )


def test_the_cli_gives_a_role_sql_access(dsn: str, jm: Jobmon, admin, rows, monkeypatch, capsys):
    from jobmon_core import cli

    login, password = f"cli_{secrets.token_hex(4)}", secrets.token_hex(12)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(login), sql.Literal(password)
        )
    )
    admin.execute(
        sql.SQL("GRANT ALL ON SCHEMA {} TO {}").format(*map(sql.Identifier, (jm.schema, login)))
    )
    admin.execute(
        sql.SQL(
            "GRANT ALL ON ALL TABLES IN SCHEMA {0} TO {1};"
            " GRANT ALL ON ALL SEQUENCES IN SCHEMA {0} TO {1}"
        ).format(sql.Identifier(jm.schema), sql.Identifier(login))
    )
    try:
        monkeypatch.setenv("ROLE_PASSWORD", password)
        code = cli.main(
            [
                "--dsn",
                dsn,
                "--schema",
                jm.schema,
                "sql-access",
                login,
                "--password-env",
                "ROLE_PASSWORD",
            ]
        )
        assert code == 0
        assert password not in capsys.readouterr().out
        with psycopg.connect(make_conninfo(dsn, user=login, password=password)) as conn:
            _use_schema(conn, jm.schema)
            conn.execute("SELECT add_job('from the cli role')")
            conn.rollback()
        assert rows("job_log")[0]["owner"] == login
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_a_log_write_blocked_by_its_own_caller_fails_instead_of_hanging(caller, rows: Rows):
    """The caller holds the job's row (an uncommitted UPDATE): the loopback session's close
    would wait for it forever, a deadlock across two sessions that PostgreSQL cannot see.
    Its lock_timeout (5 s) turns that into an error."""
    job = _value(caller, "SELECT add_job('self blocked')")
    caller.execute("BEGIN")
    caller.execute("UPDATE job_log SET owner = owner WHERE job_id = %s", [job])
    started = time.monotonic()
    with pytest.raises(pg_errors.LockNotAvailable):
        caller.execute("SELECT close_job(%s)", [job])
    assert time.monotonic() - started < 10
    caller.execute("ROLLBACK")
    caller.execute("SELECT close_job(%s)", [job])
    assert rows("job_log")[0]["status"] == "OK"


def test_every_function_from_plpgsql(caller, rows: Rows):
    rows.execute(
        "CREATE TABLE my_status (alert_code int, alert_text text);"
        " INSERT INTO my_status VALUES (1, 'FINE'), (3, 'BAD')"
    )
    caller.execute(
        """
        DO $$
        DECLARE
            v_job bigint;
            v_other bigint;
            v_step bigint;
            v_n int;
        BEGIN
            v_job := add_job('every function');
            v_step := add_step(v_job, 'one');
            PERFORM update_step(v_step, 'OK', 'three args');
            PERFORM update_step(v_job, v_step, 'OK', 'four args');
            ASSERT sql_step(v_job, 'sql', 'SELECT 1') AND NOT sql_step(v_job, 'bad', 'SELECT x');
            ASSERT sql_job('every sql job', 'SELECT 1') LIKE 'Job logged with job id: %';
            PERFORM close_job(v_job);
            v_other := add_job('every function');
            PERFORM fail_job(v_other, 2);
            PERFORM close_job(add_job('every custom'), 'my_status');
            PERFORM fail_job(add_job('every custom'), 'my_status');
            PERFORM fail_job(add_job('every custom'));
            ASSERT NOT cancel_job(add_job('every cancel'));
            ASSERT NOT cancel_job(add_job('every cancel'), 'my_status');
            SELECT count(*) INTO v_n FROM show_job('every function');
            ASSERT v_n = 2;
            SELECT count(*) INTO v_n FROM show_job_like('every', 3);
            ASSERT v_n = 3;
            SELECT count(*) INTO v_n FROM show_job_status('BAD');
            ASSERT v_n = 2;
            SELECT count(*) INTO v_n FROM show_job_status('every function', 'WARNING');
            ASSERT v_n = 1;
            SELECT count(*) INTO v_n FROM show_detail(v_job);
            ASSERT v_n = 3;
            SELECT count(*) INTO v_n FROM show_detail('every function', 2);
            ASSERT v_n = 3;
            SELECT count(*) INTO v_n FROM show_running();
            ASSERT v_n = 0;
            PERFORM job_log_clear('1 day');
        END
        $$"""
    )
    statuses = [(j["job_name"], j["status"]) for j in rows("job_log")]
    assert statuses[:3] == [
        ("EVERY FUNCTION", "OK"),
        ("EVERY SQL JOB", "OK"),
        ("EVERY FUNCTION", "WARNING"),
    ]
    assert [s for n, s in statuses if n == "EVERY CUSTOM"] == ["FINE", "BAD", "CRITICAL"]
    assert [s for n, s in statuses if n == "EVERY CANCEL"] == ["CRITICAL", "BAD"]
    assert statuses[-1][0].startswith("PURGING PG_JOBMON JOB LOGS OLDER THAN")


def test_the_plpgsql_example_keeps_its_steps_when_it_fails(caller, dsn: str, jm: Jobmon, rows):
    """sql_examples/nightly_rollup.sql, as the README and the demo use it (schema jobmon:
    it is installed here under the test's own schema name by search_path)."""
    from pathlib import Path

    example = Path(__file__).parent.parent / "sql_examples" / "nightly_rollup.sql"
    text = example.read_text(encoding="utf-8").replace("jobmon.", "")
    caller.execute(text)
    caller.execute("SELECT nightly_rollup()")
    with pytest.raises(pg_errors.RaiseException, match="does not match"):
        caller.execute("SELECT nightly_rollup(p_fail => true)")
    good, bad = rows("job_log")
    assert (good["job_name"], good["status"], bad["status"]) == ("NIGHTLY ROLLUP", "OK", "CRITICAL")
    failed_steps = [
        (s["action"], s["status"]) for s in rows("job_detail", "job_id = %s", [bad["job_id"]])
    ]
    assert failed_steps == [
        ("load the day's orders", "OK"),
        ("roll up into demo_daily_totals", "OK"),
        ("check the totals", "CRITICAL"),
    ]
    assert _value(caller, "SELECT count(*) FROM demo_orders") == 250  # the second run rolled back


def test_a_security_definer_callers_connection_is_never_left_for_the_session_user(
    dsn: str, jm: Jobmon, admin, rows
):
    """A function owned by the superuser logs as the superuser; the session user (a writer
    login) must not find a connection logged in as the superuser afterwards: dblink takes
    any open connection's name, so such a connection would run anything as its owner."""
    jm.create_roles()
    login, password = f"etl_{secrets.token_hex(4)}", secrets.token_hex(12)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE jobmon_writer").format(
            sql.Identifier(login), sql.Literal(password)
        )
    )
    rows.execute(
        "CREATE FUNCTION definer_job() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER"
        " AS $$ BEGIN RETURN add_job('definer job'); END $$"
    )
    try:
        jm.allow_sql_logging(login, password)
        with psycopg.connect(make_conninfo(dsn, user=login, password=password)) as etl:
            etl.autocommit = True
            _use_schema(etl, jm.schema)
            etl.execute("SELECT add_job('own job')")  # the session user's kept connection
            etl.execute("SELECT definer_job()")
            etl.execute("SELECT definer_job()")
            open_now = _value(etl, "SELECT public.dblink_get_connections()")
            assert isinstance(open_now, list)
            assert len(open_now) == 1, open_now  # only the session user's own
            who = _value(
                etl,
                "SELECT r FROM public.dblink(%s, 'SELECT current_user') AS t(r text)",
                [open_now[0]],
            )
            assert who == login
        owners = [(j["job_name"], j["owner"]) for j in rows("job_log")]
        superuser = admin.execute("SELECT current_user").fetchone()[0]
        assert owners == [
            ("OWN JOB", login),
            ("DEFINER JOB", superuser),
            ("DEFINER JOB", superuser),
        ]
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_sql_job_cut_by_a_statement_timeout_ends_its_job(caller, rows: Rows):
    caller.execute("SET statement_timeout = '300ms'")
    with pytest.raises(pg_errors.QueryCanceled):
        caller.execute("SELECT sql_job('slow sql job', 'SELECT pg_sleep(5)')")
    caller.execute("RESET statement_timeout")
    (job,) = rows("job_log")
    assert job["status"] == "CRITICAL"
    (step,) = rows("job_detail")
    assert step["status"] == "CRITICAL"
    assert "statement timeout" in step["message"]
    # the lock was released: the next run is not "concurrent"
    answer = _value(caller, "SELECT sql_job('slow sql job', 'SELECT 1')")
    assert str(answer).startswith("Job logged with job id: ")


def test_a_read_only_add_job_is_not_sent_twice_when_its_connection_broke(caller, admin, rows):
    """In a read-only transaction the id is taken remotely, so a resend after a broken
    connection could write the job twice: the call raises instead, and the next one works."""
    caller.execute("SELECT add_job('warm up')")
    (pid,) = _loopback_pids(admin)
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)
    caller.execute("BEGIN READ ONLY")
    with pytest.raises(psycopg.OperationalError):
        caller.execute("SELECT add_job('read only after a break')")
    caller.execute("ROLLBACK")
    caller.execute("BEGIN READ ONLY")
    caller.execute("SELECT add_job('read only after a break')")
    caller.execute("COMMIT")
    names = [j["job_name"] for j in rows("job_log")]
    assert names == ["WARM UP", "READ ONLY AFTER A BREAK"]
