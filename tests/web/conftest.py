"""Fixtures of the page's tests: a monitor role on the test's schema, the read-only
database the page reads through, and the app over it (a real PostgreSQL, as everywhere)."""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from jobmon_core import Jobmon
from jobmon_web.app import create_app
from jobmon_web.database import ReadOnlyDatabase

_numbers = itertools.count(1)

# The page runs in Prefect's environment too (these tests pass there); the Airflow plugin's
# tests need Airflow, so that environment leaves them out, as tests/conftest.py does
collect_ignore = [] if importlib.util.find_spec("airflow") else ["test_airflow_plugin.py"]


def drop_roles(admin: psycopg.Connection, *names: str) -> None:
    for name in names:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def monitor_role(jm: Jobmon, admin: psycopg.Connection) -> Iterator[str]:
    """A monitor role of this test's own (roles are cluster-wide), granted on the schema."""
    name = f"jm_web_monitor_{os.getpid()}_{next(_numbers)}"
    jm.create_roles(writer=None, monitor=name, admin=None)
    yield name
    drop_roles(admin, name)


@pytest.fixture
def database(dsn: str, jm: Jobmon, monitor_role: str) -> Iterator[ReadOnlyDatabase]:
    """The page's database: the test's superuser login, every read as the monitor role."""
    db = ReadOnlyDatabase(dsn, schema=jm.schema, role=monitor_role)
    yield db
    db.close()


@pytest.fixture
def client(database: ReadOnlyDatabase) -> Iterator[TestClient]:
    with TestClient(create_app(database)) as test_client:
        yield test_client


@pytest.fixture
def step_client(database: ReadOnlyDatabase) -> Iterator[TestClient]:
    """The app with the opt-in step metric on."""
    with TestClient(create_app(database, step_metrics=True)) as test_client:
        yield test_client


def table(jm: Jobmon, name: str) -> sql.Identifier:
    """A table of the test's jobmon schema, for SQL composed with psycopg.sql."""
    return sql.Identifier(jm.schema, name)


def failed_configured_run(jm: Jobmon, name: str = "nightly load") -> int:
    """A configured job whose run fails at its second step: CRITICAL at once."""
    jm.configure_check(name, warn=timedelta(hours=25), error=timedelta(hours=49))
    job = jm.add_job(name)
    ok = jm.add_step(job, "copy rows")
    jm.update_step(ok, "OK", "1000 rows")
    bad = jm.add_step(job, "analyze facts")
    jm.update_step(bad, "CRITICAL", "ValueError: boom")
    jm.fail_job(job)
    return job
