"""Read-only by design: whatever login the page connects with, every read is a READ ONLY
transaction run as the monitor role, so nothing it serves can write."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from devtools.pg import conninfo_params
from jobmon_core.errors import DatabaseError, JobmonConnectionError, JobmonPermissionError
from jobmon_web.database import ReadOnlyDatabase

from .conftest import drop_roles


def test_every_read_runs_as_the_monitor_role_in_a_read_only_transaction(database, monitor_role):
    user, read_only = database.read(
        lambda conn: conn.execute(
            "SELECT current_user, current_setting('transaction_read_only')"
        ).fetchone()
    )
    assert (user, read_only) == (monitor_role, "on")


def test_a_write_through_the_page_fails_even_from_a_superuser_login(database, jm, rows):
    """The test's login is a superuser: the transaction, not the login, refuses."""
    job = jm.add_job("kept")
    insert = sql.SQL("INSERT INTO {} (owner, job_name, pid) VALUES ('x', 'X', 0)").format(
        sql.Identifier(jm.schema, "job_log")
    )
    delete = sql.SQL("DELETE FROM {}").format(sql.Identifier(jm.schema, "job_log"))
    for statement in (insert, delete):
        with pytest.raises(DatabaseError, match="read-only transaction"):
            database.read(lambda conn, s=statement: conn.execute(s))
    with pytest.raises(DatabaseError, match="read-only transaction"):
        database.read(lambda conn: conn.execute("CREATE TABLE public.jobmon_web_was_here ()"))
    assert [r["job_id"] for r in rows("job_log")] == [job]


def test_the_monitor_role_itself_cannot_write_the_log(database, jm):
    """Past the read-only transaction (RESET ROLE is refused there too), the role holds no
    INSERT, UPDATE or DELETE on the log."""
    update = sql.SQL("SET TRANSACTION READ WRITE; UPDATE {} SET status = 'OK'").format(
        sql.Identifier(jm.schema, "job_log")
    )
    with pytest.raises(DatabaseError):
        database.read(lambda conn: conn.execute(update))
    grants = database.read(
        lambda conn: conn.execute(
            "SELECT has_table_privilege(current_user, %s, 'INSERT, UPDATE, DELETE')",
            [f"{jm.schema}.job_log"],
        ).fetchone()
    )
    assert grants == (False,)


def test_a_login_outside_the_monitor_role_is_told_what_to_grant(dsn, jm, admin, monitor_role):
    login = f"{monitor_role}_outsider"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw-outsider'").format(sql.Identifier(login))
    )
    try:
        params = {**conninfo_params(dsn), "user": login, "password": "pw-outsider"}
        db = ReadOnlyDatabase(
            psycopg.conninfo.make_conninfo(**params), schema=jm.schema, role=monitor_role
        )
        try:
            with pytest.raises(JobmonPermissionError) as caught:
                db.read(lambda conn: conn.execute("SELECT 1"))
        finally:
            db.close()
        said = str(caught.value)
        assert f"runs as the monitor role {monitor_role!r}" in said
        assert f"GRANT {monitor_role} TO" in said
        assert "pw-outsider" not in said
    finally:
        drop_roles(admin, login)


def test_a_member_login_reads_and_a_missing_role_is_named(dsn, jm, admin, monitor_role):
    login = f"{monitor_role}_member"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw-member' IN ROLE {}").format(
            sql.Identifier(login), sql.Identifier(monitor_role)
        )
    )
    try:
        conninfo = psycopg.conninfo.make_conninfo(
            **{**conninfo_params(dsn), "user": login, "password": "pw-member"}
        )
        db = ReadOnlyDatabase(conninfo, schema=jm.schema, role=monitor_role)
        try:
            assert db.read(lambda conn: conn.execute("SELECT current_user").fetchone()) == (
                monitor_role,
            )
        finally:
            db.close()
        missing = ReadOnlyDatabase(conninfo, schema=jm.schema, role="no_such_monitor_role")
        try:
            with pytest.raises(JobmonPermissionError, match="jobmon install --create-roles"):
                missing.read(lambda conn: conn.execute("SELECT 1"))
        finally:
            missing.close()
    finally:
        drop_roles(admin, login)


def test_a_connection_looked_up_at_the_first_read_names_its_schema_or_says_why_not(
    dsn, jm, monitor_role
):
    """The Airflow plugin's way: the connection (and the schema in its extras) is looked up
    when the first page is opened; a failed lookup is a clear error, tried again later."""
    calls = []

    def lookup() -> tuple[str, str]:
        calls.append(1)
        if len(calls) == 1:
            raise LookupError("The conn_id `jobmon_default` isn't defined")
        return dsn, jm.schema

    db = ReadOnlyDatabase(lookup, role=monitor_role)
    try:
        with pytest.raises(JobmonConnectionError, match="cannot find the jobmon connection: The"):
            db.read(lambda conn: None)
        assert db.read(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)
        assert db.schema == jm.schema
    finally:
        db.close()
