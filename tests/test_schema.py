"""install(): the pg_jobmon 1.4 layout, idempotent, concurrent-safe, versioned, any schema name."""

from __future__ import annotations

import multiprocessing

import psycopg
import pytest
from psycopg import sql

from devtools import pg
from jobmon_core import Jobmon, SchemaError
from jobmon_core.schema import load_migrations

UPSTREAM_COLUMNS = {
    "job_log": [
        ("job_id", "bigint", "NO"),
        ("owner", "text", "NO"),
        ("job_name", "text", "NO"),
        ("start_time", "timestamp with time zone", "NO"),
        ("end_time", "timestamp with time zone", "YES"),
        ("status", "text", "YES"),
        ("pid", "integer", "NO"),
    ],
    "job_detail": [
        ("job_id", "bigint", "NO"),
        ("step_id", "bigint", "NO"),
        ("action", "text", "NO"),
        ("start_time", "timestamp with time zone", "NO"),
        ("end_time", "timestamp with time zone", "YES"),
        ("elapsed_time", "real", "YES"),
        ("status", "text", "YES"),
        ("message", "text", "YES"),
    ],
    "job_check_log": [
        ("job_id", "bigint", "NO"),
        ("job_name", "text", "NO"),
        ("alert_code", "integer", "NO"),
    ],
    "job_check_config": [
        ("job_name", "text", "NO"),
        ("warn_threshold", "interval", "NO"),
        ("error_threshold", "interval", "NO"),
        ("active", "boolean", "NO"),
        ("sensitivity", "smallint", "NO"),
        ("escalate", "integer", "YES"),
    ],
    "job_status_text": [
        ("alert_code", "integer", "NO"),
        ("alert_text", "text", "NO"),
    ],
}


def columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()


@pytest.mark.parametrize("table", sorted(UPSTREAM_COLUMNS))
def test_tables_have_the_upstream_columns_first_and_in_order(admin, jm, table):
    found = columns(admin, jm.schema, table)
    assert found[: len(UPSTREAM_COLUMNS[table])] == UPSTREAM_COLUMNS[table]


def test_constraints_indexes_sequences_and_triggers_have_upstream_names(admin, jm):
    constraints = {
        r[0]
        for r in admin.execute(
            "SELECT conname FROM pg_constraint WHERE connamespace = %s::regnamespace",
            [sql.Identifier(jm.schema).as_string(admin)],
        )
    }
    assert {
        "job_log_job_id_pkey",
        "job_detail_step_id_pkey",
        "job_detail_job_id_fkey",
        "job_check_config_job_name_pkey",
        "job_status_text_alert_code_pkey",
    } <= constraints
    indexes = {
        r[0]
        for r in admin.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", [jm.schema]
        )
    }
    assert {
        "job_log_job_name_idx",
        "job_log_start_time_idx",
        "job_log_status_idx",
        "job_log_pid_idx",
        "job_detail_job_id_idx",
    } <= indexes
    sequences = admin.execute(
        "SELECT sequencename, data_type::text, increment_by, cache_size FROM pg_sequences"
        " WHERE schemaname = %s ORDER BY 1",
        [jm.schema],
    ).fetchall()
    assert sequences == [
        ("job_detail_step_id_seq", "bigint", 1, 1),
        ("job_log_job_id_seq", "bigint", 1, 1),
    ]
    triggers = admin.execute(
        "SELECT tgname, tgrelid::regclass::text FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %s::regnamespace"
        " AND NOT tgisinternal ORDER BY 1",
        [sql.Identifier(jm.schema).as_string(admin)],
    ).fetchall()
    assert [t[0] for t in triggers] == ["job_check_log_escalate_trig", "trg_job_monitor"]


def test_detail_cascades_with_its_job(admin, jm, rows):
    job = jm.add_job("cascade")
    jm.add_step(job, "one")
    rows.execute("DELETE FROM job_log WHERE job_id = %s", [job])
    assert rows("job_detail") == []


def test_status_texts_are_seeded_and_the_nagios_view_answers_the_seed_query(admin, jm, rows):
    assert [(r["alert_code"], r["alert_text"]) for r in rows("job_status_text")] == [
        (1, "OK"),
        (2, "WARNING"),
        (3, "CRITICAL"),
    ]
    view = admin.execute(
        sql.SQL("SELECT error_code, error_text FROM {} ORDER BY 1").format(
            sql.Identifier(jm.schema, "job_alert_nagios")
        )
    ).fetchall()
    assert view == [(1, "OK"), (2, "WARNING"), (3, "CRITICAL")]


def test_install_is_idempotent_and_versioned(dsn, jm):
    newest = len(load_migrations())
    assert jm.schema_version() == newest
    assert jm.install() == []
    assert Jobmon(dsn, schema=jm.schema).install() == []
    assert jm.schema_version() == newest


def test_schema_version_is_zero_before_install(dsn, schema_name):
    assert Jobmon(dsn, schema=schema_name).schema_version() == 0


def test_install_upgrades_from_an_older_version(dsn, schema_name, admin, monkeypatch):
    from jobmon_core import schema as schema_module

    every = load_migrations()
    monkeypatch.setattr(schema_module, "load_migrations", lambda: every[:1])
    jm = Jobmon(dsn, schema=schema_name)
    assert jm.install() == [1]
    monkeypatch.setattr(schema_module, "load_migrations", lambda: every)
    assert jm.install() == list(range(2, len(every) + 1))
    assert jm.schema_version() == len(every)


def test_install_refuses_a_schema_newer_than_the_code(dsn, jm, admin, monkeypatch):
    from jobmon_core import schema as schema_module

    monkeypatch.setattr(schema_module, "load_migrations", lambda: load_migrations()[:1])
    with pytest.raises(SchemaError, match="newer than this pg-jobmon"):
        Jobmon(dsn, schema=jm.schema).install()


def test_install_refuses_an_edited_migration(dsn, jm, admin):
    admin.execute(
        sql.SQL("UPDATE {} SET checksum = 'x' WHERE version = 1").format(
            sql.Identifier(jm.schema, "jobmon_schema_migrations")
        )
    )
    with pytest.raises(SchemaError, match="must never be edited"):
        jm.install()


def test_install_refuses_a_job_log_it_did_not_create(dsn, schema_name, admin):
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema_name)))
    admin.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema_name, "job_log")))
    with pytest.raises(SchemaError, match="did not install"):
        Jobmon(dsn, schema=schema_name).install()


def test_any_schema_name_works(dsn, admin):
    name = 'Job "Mon" 2'
    jm = Jobmon(dsn, schema=name)
    try:
        jm.install()
        job = jm.add_job("quoted")
        jm.close_job(job)
        status = admin.execute(
            sql.SQL("SELECT status FROM {} WHERE job_id = %s").format(
                sql.Identifier(name, "job_log")
            ),
            [job],
        ).fetchone()
        assert status == ("OK",)
        fn_config = admin.execute(
            "SELECT proconfig FROM pg_proc WHERE proname = 'job_monitor'"
            " AND pronamespace = %s::regnamespace",
            [sql.Identifier(name).as_string(admin)],
        ).fetchone()
        assert fn_config == (['search_path="Job ""Mon"" 2", pg_temp'],)
    finally:
        jm.close()
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _install(dsn: str, schema: str, barrier) -> list[int]:  # runs in a child process
    barrier.wait()
    return Jobmon(dsn, schema=schema).install()


def test_concurrent_installs_apply_each_migration_once(pg_server):
    """8 processes install at the same moment on a fresh database: one applies each
    migration, the others wait for it and find nothing left to do."""
    n = 8
    ctx = multiprocessing.get_context("spawn")
    with pg.fresh_database(pg_server, "jobmon_install") as fresh, ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            results = pool.starmap(_install, [(fresh, "jobmon", barrier)] * n)
        applied = sorted(v for r in results for v in r)
        assert applied == list(range(1, len(load_migrations()) + 1))
        assert Jobmon(fresh).schema_version() == len(load_migrations())
