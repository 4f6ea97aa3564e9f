"""Connection strings, connection errors and secrets: clear errors, never a password."""

from __future__ import annotations

import logging
import traceback

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobmon_core import (
    InvalidArgumentError,
    Jobmon,
    JobmonConnectionError,
    JobmonError,
    SchemaNotInstalledError,
)

SECRET = "S3cret-Pw-do-not-print"


def everything_said(exc: BaseException) -> str:
    """The whole traceback a user would see, chained causes included."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture
def unreachable_dsn() -> str:
    # port 1 on loopback: nothing listens there, the refusal is immediate
    return f"postgresql://etl:{SECRET}@127.0.0.1:1/warehouse"


def test_an_unreachable_database_is_a_clear_error_without_the_password(unreachable_dsn, caplog):
    jm = Jobmon(unreachable_dsn, connect_timeout=2)
    caplog.set_level(logging.DEBUG)
    for call in (lambda: jm.add_job("x"), jm.install, jm.schema_version):
        with pytest.raises(
            JobmonConnectionError, match="cannot connect to the jobmon database"
        ) as caught:
            call()
        assert SECRET not in everything_said(caught.value)
        assert "127.0.0.1" in str(caught.value)
    assert SECRET not in repr(jm)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=db password={SECRET} trailing",  # libpq quotes the bad part back
        f"host=db password='{SECRET}",
        f"postgresql://u:{SECRET}@host/db?bogus_option=1",
    ],
)
def test_a_malformed_dsn_is_refused_without_echoing_it(dsn):
    with pytest.raises(InvalidArgumentError, match="not valid libpq syntax") as caught:
        Jobmon(dsn)
    assert SECRET not in everything_said(caught.value)
    assert "trailing" not in str(caught.value)


def test_a_dsn_libpq_rejects_at_connect_time_is_a_connection_error():
    jm = Jobmon(f"postgresql://u:{SECRET}@127.0.0.1:notaport/db")
    with pytest.raises(JobmonConnectionError, match="notaport") as caught:
        jm.add_job("x")
    assert SECRET not in everything_said(caught.value)


def test_repr_and_errors_never_show_the_password(dsn, schema_name, caplog, admin):
    params = conninfo_to_dict(dsn)
    params.setdefault("password", SECRET)  # the embedded server trusts; PG 15 checks it
    secret = params["password"]
    jm = Jobmon(make_conninfo("", **params), schema=schema_name)
    caplog.set_level(logging.DEBUG)
    assert secret not in repr(jm)
    with pytest.raises(SchemaNotInstalledError) as caught:
        jm.add_job("not installed yet")
    assert secret not in everything_said(caught.value)
    jm.install()
    job = jm.add_job("kill me")
    admin.execute("SELECT pg_terminate_backend(%s, 5000)", [jm._connection.backend_pid])
    jm.add_step(job, "after reconnect")  # logs a warning about the lost connection
    assert "reconnecting" in caplog.text
    assert secret not in caplog.text
    assert secret not in repr(jm._connection)


def test_a_missing_schema_says_how_to_install(dsn):
    jm = Jobmon(dsn, schema="never_installed")
    with pytest.raises(
        SchemaNotInstalledError, match=r"run Jobmon\.install\(\) or `jobmon install`"
    ):
        jm.add_job("x")


def test_jobmon_dsn_from_the_environment(dsn, schema_name, monkeypatch, admin):
    monkeypatch.setenv("JOBMON_DSN", dsn)
    jm = Jobmon(schema=schema_name)
    jm.install()
    jm.add_job("from env")
    assert jm.schema_version() > 0


def test_libpq_defaults_when_nothing_is_given(dsn, schema_name, monkeypatch):
    params = conninfo_to_dict(dsn)
    monkeypatch.delenv("JOBMON_DSN", raising=False)
    monkeypatch.setenv("PGHOST", params["host"])
    monkeypatch.setenv("PGDATABASE", params["dbname"])
    monkeypatch.setenv("PGUSER", params["user"])
    if "port" in params:
        monkeypatch.setenv("PGPORT", params["port"])
    if "password" in params:
        monkeypatch.setenv("PGPASSWORD", params["password"])
    jm = Jobmon(schema=schema_name)
    assert jm.install()


def test_application_name_defaults_to_pg_jobmon_and_the_dsn_wins(dsn, jm, admin):
    jm.add_job("x")
    (name,) = admin.execute(
        "SELECT application_name FROM pg_stat_activity WHERE pid = %s",
        [jm._connection.backend_pid],
    ).fetchone()
    assert name == "pg-jobmon"
    own = Jobmon(make_conninfo(dsn, application_name="nightly etl"), schema=jm.schema)
    own.add_job("y")
    (name,) = admin.execute(
        "SELECT application_name FROM pg_stat_activity WHERE pid = %s",
        [own._connection.backend_pid],
    ).fetchone()
    assert name == "nightly etl"
    own.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schema": ""}, "schema must not be empty"),
        ({"schema": None}, "schema must be a string"),
        ({"schema": "s" * 64}, "63-byte limit"),
        ({"connect_timeout": 0}, "at least 1 second"),
        ({"connect_timeout": "5"}, "must be an int"),
        ({"dsn": 5}, "dsn must be a libpq connection string"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Jobmon(**kwargs)


def test_every_error_is_a_jobmon_error():
    import jobmon_core.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, JobmonError) for c in classes)


def test_psycopg_errors_never_leak(jm, rows):
    rows.execute("ALTER TABLE job_detail ADD CONSTRAINT no_boom CHECK (action <> 'boom')")
    job = jm.add_job("check violation")
    with pytest.raises(JobmonError, match="no_boom") as caught:
        jm.add_step(job, "boom")
    assert not isinstance(caught.value, psycopg.Error)
