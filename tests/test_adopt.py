"""install() takes over a schema running the pg_jobmon extension (1.4.x/1.5.0) in place.

The extension here is a real one: tests/fixtures/pg_jobmon_14 (shaped like pg_jobmon 1.4.1:
its tables, sequences, triggers and functions by name and signature; logging over dblink),
copied into the test server's extension folder by devtools/fake_pg_jobmon.py and created
with ``CREATE EXTENSION pg_jobmon``. Its own functions log the history that install() must
keep, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devtools import fake_pg_jobmon, pg
from jobmon_core import Jobmon, SchemaError
from jobmon_core.errors import DatabaseError
from jobmon_core.schema import Migration, load_migrations

# Every table of the extension with its 1.4 columns: what "kept byte for byte" compares.
ORIGINAL_COLUMNS = {
    "job_log": ("job_id", "owner", "job_name", "start_time", "end_time", "status", "pid"),
    "job_detail": (
        "job_id",
        "step_id",
        "action",
        "start_time",
        "end_time",
        "elapsed_time",
        "status",
        "message",
    ),
    "job_check_log": ("job_id", "job_name", "alert_code"),
    "job_check_config": (
        "job_name",
        "warn_threshold",
        "error_threshold",
        "active",
        "sensitivity",
        "escalate",
    ),
    "job_status_text": ("alert_code", "alert_text"),
    "dblink_mapping_jobmon": ("username", "port", "pwd", "host"),
}
HAND_JOB_ID = 1000  # a job_log row inserted with an explicit id, past the sequence
HAND_STEP_ID = 5000

NO_RUN = "Has not completed a run since highest configured monitoring time period"


@pytest.fixture(scope="module")
def extension_files(pg_server: pg.Server) -> None:
    fake_pg_jobmon.install(pg_server.dsn)


@pytest.fixture
def original(extension_files, admin, dsn, schema_name) -> Iterator[str]:
    """``schema_name`` running the extension, its loopback configured: the schema name."""
    admin.execute("CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public")
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema_name)))
    admin.execute(
        sql.SQL("CREATE EXTENSION pg_jobmon SCHEMA {} VERSION '1.4.1'").format(
            sql.Identifier(schema_name)
        )
    )
    params = pg.conninfo_params(dsn)
    admin.execute(
        sql.SQL("INSERT INTO {} (username, port, pwd, host) VALUES (%s, %s, %s, %s)").format(
            sql.Identifier(schema_name, "dblink_mapping_jobmon")
        ),
        [params.get("user"), params.get("port"), params.get("password"), params.get("host")],
    )
    yield schema_name
    # a test that did not adopt leaves the extension (one per database), maybe used by views
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name)))


@pytest.fixture
def history(original, admin) -> str:
    """The original's schema with a history logged by its own functions: the schema name."""
    log_history(admin, original)
    return original


def on_path(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))


def call(conn: psycopg.Connection, statement: str, *params: object) -> object:
    row = conn.execute(statement, params).fetchone()
    return None if row is None else row[0]


def log_history(conn: psycopg.Connection, schema: str) -> None:
    """Jobs OK, failed, escalated, running and late; check config; a custom status text."""
    on_path(conn, schema)
    conn.execute("INSERT INTO job_status_text (alert_code, alert_text) VALUES (4, 'EMERGENCY')")
    conn.execute(
        "INSERT INTO job_check_config"
        " (job_name, warn_threshold, error_threshold, active, sensitivity, escalate) VALUES"
        " ('WARN JOB', '1 day', '2 days', true, 0, NULL),"
        " ('ESCALATING JOB', '1 day', '2 days', true, 0, 2),"
        " ('NEVER RUN', '1 day', '2 days', true, 0, NULL),"
        " ('LATE JOB', '1 hour', '1 day', true, 0, NULL),"
        " ('IDLE JOB', '1 hour', '1 day', false, 0, NULL)"
    )
    job = call(conn, "SELECT add_job('nightly load')")
    step = call(conn, "SELECT add_step(%s, 'load rows')", job)
    call(conn, "SELECT update_step(%s, 'OK', 'Rows affected: 10')", step)
    call(conn, "SELECT close_job(%s)", job)
    for _ in range(3):
        job = call(conn, "SELECT add_job('import orders')")
        step = call(conn, "SELECT add_step(%s, 'fetch')", job)
        call(conn, "SELECT update_step(%s, 'CRITICAL', 'ERROR: boom')", step)
        call(conn, "SELECT fail_job(%s)", job)
    call(conn, "SELECT fail_job(add_job('warn job'), 2)")
    for _ in range(2):  # the second is escalated to EMERGENCY
        call(conn, "SELECT fail_job(add_job('escalating job'))")
    running = call(conn, "SELECT add_job('still running')")
    call(conn, "SELECT add_step(%s, 'waiting')", running)
    call(conn, "SELECT sql_job('sql job', 'SELECT 1')")
    conn.execute(
        "INSERT INTO job_log (job_id, owner, job_name, start_time, end_time, status, pid)"
        " VALUES (%s, 'etl', 'LATE JOB', now() - interval '3 hours',"
        "         now() - interval '3 hours' + interval '1 minute', 'OK', 1)",
        [HAND_JOB_ID],
    )
    conn.execute(
        "INSERT INTO job_detail (job_id, step_id, action, start_time, end_time, elapsed_time,"
        " status, message) VALUES (%s, %s, 'restored step', now() - interval '3 hours',"
        " now() - interval '3 hours' + interval '1 minute', 60, 'OK', 'from a restore')",
        [HAND_JOB_ID, HAND_STEP_ID],
    )
    conn.execute("RESET search_path")


def snapshot(conn: psycopg.Connection, schema: str) -> dict[str, list[str]]:
    """Every row of every table of the extension, as PostgreSQL's text of its 1.4 columns."""
    found = {}
    for table, columns in ORIGINAL_COLUMNS.items():
        query = sql.SQL("SELECT ROW({})::text FROM {} ORDER BY 1").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, table)
        )
        found[table] = [r[0] for r in conn.execute(query)]
    return found


def check_rows(conn: psycopg.Connection, schema: str) -> list[tuple]:
    return conn.execute(
        sql.SQL("SELECT * FROM {}.check_job_status()").format(sql.Identifier(schema))
    ).fetchall()


def expected_alerts(conn: psycopg.Connection, schema: str) -> list[tuple]:
    """The alerts the logged history must give, computed from the data by hand."""
    late_end = call(
        conn,
        sql.SQL("SELECT max(end_time)::text FROM {} WHERE job_name = 'LATE JOB'")
        .format(sql.Identifier(schema, "job_log"))
        .as_string(conn),
    )
    return [
        (4, "FAILED_RUN", "ESCALATING JOB", "1 EMERGENCY run(s)"),
        (3, "FAILED_RUN", "ESCALATING JOB", "1 CRITICAL run(s)"),
        (3, "FAILED_RUN", "IMPORT ORDERS", "3 consecutive CRITICAL runs"),
        (3, "MISSING", "NEVER RUN", NO_RUN),
        (2, "MISSING", "LATE JOB", f"Last completed run: {late_end}"),
        (2, "FAILED_RUN", "WARN JOB", "1 WARNING run(s)"),
    ]


def extension_schema(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_jobmon'"
    ).fetchone()
    return None if row is None else row[0]


def test_adoption_keeps_every_row_and_the_check(history, admin, dsn):
    before = snapshot(admin, history)
    alerts_before = check_rows(admin, history)
    assert alerts_before == expected_alerts(admin, history)
    assert len(before["job_log"]) == 10
    assert len(before["job_check_log"]) == 6

    jm = Jobmon(dsn, schema=history)
    try:
        assert jm.install() == [m.version for m in load_migrations()]
        assert extension_schema(admin) is None
        assert snapshot(admin, history) == before
        assert check_rows(admin, history) == alerts_before
        assert [tuple(vars(a).values()) for a in jm.check_job_status()] == alerts_before

        # the sequences continue past the last ids, hand-inserted ones included
        job = jm.add_job("after adoption")
        step = jm.add_step(job, "first step")
        assert job > HAND_JOB_ID
        assert step > HAND_STEP_ID
        jm.update_step(step, "OK", "logged by the Python writer")
        jm.fail_job(jm.add_job("import orders"))
        jm.close_job(job)
        on_path(admin, history)
        assert call(admin, "SELECT status FROM job_log WHERE job_id = %s", job) == "OK"
        failures = "SELECT count(*) FROM job_check_log WHERE job_name = 'IMPORT ORDERS'"
        assert call(admin, failures) == 4

        assert jm.install() == []  # idempotent from now on
        assert jm.schema_version() == len(load_migrations())
    finally:
        jm.close()


def test_adoption_keeps_the_sql_function_signatures(history, admin, dsn):
    """Every function of the extension exists again under its 1.4 signature (ours now)."""
    signatures = set(function_signatures(admin, history))
    Jobmon(dsn, schema=history).install()
    ours = set(function_signatures(admin, history))
    # gone: the dblink workers and loopback helpers, which pg-jobmon does another way
    assert sorted(signatures - ours) == [
        "_autonomous_add_job(text, text, integer)",
        "_autonomous_add_step(bigint, text)",
        "_autonomous_close_job(bigint)",
        "_autonomous_fail_job(bigint, integer)",
        "_autonomous_update_step(bigint, text, text)",
        "auth()",
        "dblink_limit_trig()",
    ]
    assert {
        ("job_check_log", "job_check_log_escalate_trig"),
        ("job_log", "trg_job_monitor"),
    } <= trigger_names(admin, history)


def function_signatures(conn: psycopg.Connection, schema: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT p.proname || '(' || oidvectortypes(p.proargtypes) || ')'"
            " FROM pg_proc p WHERE p.pronamespace = %s::regnamespace",
            [sql.Identifier(schema).as_string(conn)],
        )
    ]


def trigger_names(conn: psycopg.Connection, schema: str) -> set[tuple[str, str]]:
    return {
        (r[0], r[1])
        for r in conn.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE c.relnamespace = %s::regnamespace AND NOT t.tgisinternal",
            [sql.Identifier(schema).as_string(conn)],
        )
    }


def test_adopted_sql_functions_keep_logging(history, admin, dsn, caplog):
    """PL/pgSQL callers of 1.4's functions go on unchanged after adoption (the SQL interface
    of migration 0009): add_job, add_step, update_step, close_job, fail_job, show_*. The
    takeover says what the other roles that log from SQL need (their own user mapping)."""
    with caplog.at_level("WARNING"):
        Jobmon(dsn, schema=history).install()
    assert "jobmon sql-access ROLE" in caplog.text
    assert "dblink_mapping_jobmon" in caplog.text
    on_path(admin, history)
    job = call(admin, "SELECT add_job('sql caller')")
    assert job > HAND_JOB_ID
    step = call(admin, "SELECT add_step(%s, 'sql step')", job)
    assert step > HAND_STEP_ID
    call(admin, "SELECT update_step(%s, 'OK', 'done')", step)
    call(admin, "SELECT close_job(%s)", job)
    assert admin.execute("SELECT status FROM show_job('sql caller')").fetchall() == [("OK",)]
    assert admin.execute("SELECT action FROM show_detail(%s::bigint)", [job]).fetchall() == [
        ("sql step",)
    ]
    for _ in range(3):
        call(admin, "SELECT fail_job(add_job('import orders'))")
    assert call(admin, "SELECT count(*) FROM job_check_log WHERE job_name = 'IMPORT ORDERS'") == 6


def test_a_failure_mid_adoption_leaves_the_extension_as_it_was(history, admin, dsn, monkeypatch):
    from jobmon_core import schema as schema_module

    before = snapshot(admin, history)
    every = load_migrations()
    broken = Migration(len(every) + 1, "broken", "SELECT 1 / 0")
    monkeypatch.setattr(schema_module, "load_migrations", lambda: [*every, broken])
    with pytest.raises(DatabaseError, match="division by zero"):
        Jobmon(dsn, schema=history).install()
    assert extension_schema(admin) == history
    assert snapshot(admin, history) == before
    migrations = f"{history}.jobmon_schema_migrations"
    assert call(admin, "SELECT to_regclass(%s)::text", migrations) is None
    members = call(
        admin,
        "SELECT count(*) FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension"
        " WHERE extname = 'pg_jobmon') AND deptype = 'e'",
    )
    assert int(str(members)) > 30
    # the original still logs through its own functions
    on_path(admin, history)
    assert call(admin, "SELECT add_job('still the original')") == 10  # 9 logged before


def test_adoption_of_1_5_0(original, admin, dsn):
    admin.execute("ALTER EXTENSION pg_jobmon UPDATE TO '1.5.0'")
    log_history(admin, original)
    before = snapshot(admin, original)
    Jobmon(dsn, schema=original).install()
    assert extension_schema(admin) is None
    assert snapshot(admin, original) == before
    assert (
        call(
            admin,
            sql.SQL("SELECT count(hostaddr) FROM {}")
            .format(sql.Identifier(original, "dblink_mapping_jobmon"))
            .as_string(admin),
        )
        == 0
    )


REFUSALS = {
    # an old install we know nothing of: the catalog says 1.3.3
    "an unknown version": (
        lambda schema: sql.SQL(
            "UPDATE pg_extension SET extversion = '1.3.3' WHERE extname = 'pg_jobmon'"
        ),
        r"pg_jobmon 1\.3\.3; install\(\) takes over only",
    ),
    "tables of another shape": (
        lambda schema: sql.SQL("ALTER TABLE {} DROP COLUMN escalate").format(
            sql.Identifier(schema, "job_check_config")
        ),
        r"job_check_config is not shaped like 1\.4's",
    ),
    "a view over one of its functions": (
        lambda schema: sql.SQL("CREATE VIEW {} AS SELECT * FROM {}.check_job_status()").format(
            sql.Identifier(schema, "nagios_view"), sql.Identifier(schema)
        ),
        "objects outside the extension use its functions",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_adoption_refuses_and_leaves_the_extension(original, admin, dsn, case):
    change, message = REFUSALS[case]
    admin.execute(change(original))
    with pytest.raises(SchemaError, match=message):
        Jobmon(dsn, schema=original).install()
    assert extension_schema(admin) == original
    migrations = f"{original}.jobmon_schema_migrations"
    assert call(admin, "SELECT to_regclass(%s)::text", migrations) is None


def test_adoption_keeps_execute_grants(original, admin, dsn):
    role = "jobmon_adopt_caller"
    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    try:
        function = sql.SQL("{}.show_job(text, integer)").format(sql.Identifier(original))
        admin.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(function))
        admin.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(function, sql.Identifier(role))
        )
        Jobmon(dsn, schema=original).install()
        signature = f"{original}.show_job(text, integer)"
        assert call(admin, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", role, signature)
        assert not call(admin, "SELECT has_function_privilege('public', %s, 'EXECUTE')", signature)
    finally:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(original)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_going_back_to_the_extension(history, admin, dsn):
    """The way back that /work/notes/readme_adopt.md documents: move pg-jobmon's schema
    aside, create the extension again under the old name, copy the rows back in an order
    that fires no trigger of the extension's, move the sequences on, drop the moved schema."""
    jm = Jobmon(dsn, schema=history)
    try:
        jm.install()
        jm.fail_job(jm.add_job("import orders"))
    finally:
        jm.close()
    kept = snapshot(admin, history)
    alerts = check_rows(admin, history)
    aside = f"{history}_pgjobmon"
    new, old = sql.Identifier(history), sql.Identifier(aside)

    def copy(table: str) -> sql.Composed:
        columns = sql.SQL(", ").join(map(sql.Identifier, ORIGINAL_COLUMNS[table]))
        return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            sql.Identifier(history, table), columns, columns, sql.Identifier(aside, table)
        )

    with admin.transaction():
        admin.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(new, old))
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(new))
        admin.execute(sql.SQL("CREATE EXTENSION pg_jobmon SCHEMA {} VERSION '1.4.1'").format(new))
        admin.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(history, "job_status_text")))
        # job_check_log before job_check_config: its escalation trigger finds no config
        for table in (
            "job_status_text",
            "job_log",
            "job_detail",
            "job_check_log",
            "job_check_config",
            "dblink_mapping_jobmon",
        ):
            admin.execute(copy(table))
        for sequence, table, column in (
            ("job_log_job_id_seq", "job_log", "job_id"),
            ("job_detail_step_id_seq", "job_detail", "step_id"),
        ):
            admin.execute(
                sql.SQL("SELECT setval(%s::regclass, (SELECT max({}) FROM {}))").format(
                    sql.Identifier(column), sql.Identifier(history, table)
                ),
                [sql.Identifier(history, sequence).as_string(admin)],
            )
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(old))

    assert extension_schema(admin) == history
    assert snapshot(admin, history) == kept
    assert check_rows(admin, history) == alerts
    on_path(admin, history)
    assert int(str(call(admin, "SELECT add_job('back on the original')"))) > HAND_JOB_ID + 1


def test_jobmon_install_takes_over_too(history, admin, dsn, capsys):
    from jobmon_core.cli import main

    before = snapshot(admin, history)
    assert main(["--dsn", dsn, "--schema", history, "install"]) == 0
    assert f"schema {history!r}" in capsys.readouterr().out
    assert extension_schema(admin) is None
    assert snapshot(admin, history) == before
    assert main(["--dsn", dsn, "--schema", history, "install"]) == 0
    assert "is already at version" in capsys.readouterr().out


def test_adoption_with_dblink_in_the_same_schema(extension_files, pg_server):
    """``CREATE EXTENSION pg_jobmon SCHEMA jobmon CASCADE`` puts dblink in that schema too:
    dblink is another extension's and stays, and the SQL interface finds it there. (In a
    database of its own: dblink exists once per database, and the other tests' is in public.)
    """
    with (
        pg.fresh_database(pg_server, "jobmon_adopt") as dsn,
        psycopg.connect(dsn, autocommit=True) as admin,
    ):
        admin.execute("CREATE SCHEMA jobmon")
        admin.execute("CREATE EXTENSION pg_jobmon SCHEMA jobmon CASCADE")
        params = pg.conninfo_params(dsn)
        admin.execute(
            "INSERT INTO jobmon.dblink_mapping_jobmon (username, port, pwd, host)"
            " VALUES (%s, %s, %s, %s)",
            [params.get("user"), params.get("port"), params.get("password"), params.get("host")],
        )
        log_history(admin, "jobmon")
        before = snapshot(admin, "jobmon")
        Jobmon(dsn, schema="jobmon").install()
        assert snapshot(admin, "jobmon") == before
        assert extension_schema(admin) is None
        dblink = (
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'dblink'"
        )
        assert call(admin, dblink) == "jobmon"
        on_path(admin, "jobmon")
        job = call(admin, "SELECT add_job('after adoption')")
        call(admin, "SELECT close_job(%s)", job)
        assert call(admin, "SELECT status FROM job_log WHERE job_id = %s", job) == "OK"


def test_adoption_refuses_a_role_that_does_not_own_the_extension(original, admin, dsn):
    role, password = "jobmon_adopt_stranger", "adopt-stranger-pw"
    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    database = sql.Identifier(str(pg.conninfo_params(dsn)["dbname"]))
    admin.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(database, sql.Identifier(role))
    )
    admin.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(original), sql.Identifier(role)
        )
    )
    try:
        stranger = psycopg.conninfo.make_conninfo(dsn, user=role, password=password)
        with pytest.raises(SchemaError, match=r"owned by .*: run install\(\) as"):
            Jobmon(stranger, schema=original).install()
        assert extension_schema(admin) == original
    finally:
        admin.execute(
            sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(database, sql.Identifier(role))
        )
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_concurrent_installs_adopt_once(history, admin, dsn):
    """Several processes install at the moment the schema still runs the extension: one
    takes it over, the others wait for it and find nothing left to do."""
    from concurrent.futures import ThreadPoolExecutor

    before = snapshot(admin, history)

    def install() -> list[int]:
        jm = Jobmon(dsn, schema=history)
        try:
            return jm.install()
        finally:
            jm.close()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: install(), range(4)))
    assert sorted(map(len, results)) == [0, 0, 0, len(load_migrations())]
    assert snapshot(admin, history) == before


def test_a_pg_jobmon_in_another_schema_is_left_alone(history, admin, dsn, schema_name):
    """Installing pg-jobmon into a schema of its own, next to a running pg_jobmon, is an
    ordinary install: the extension, its schema and its rows are not touched."""
    before = snapshot(admin, history)
    elsewhere = f"{schema_name}_next_door"
    jm = Jobmon(dsn, schema=elsewhere)
    try:
        assert jm.install() == [m.version for m in load_migrations()]
        jm.close_job(jm.add_job("next door"))
        assert extension_schema(admin) == history
        assert snapshot(admin, history) == before
    finally:
        jm.close()
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(elsewhere)))
