"""Test fixtures: a real PostgreSQL, a fresh database per run, a fresh schema per test.

``JOBMON_TEST_DSN`` selects an existing server (a superuser connection string); otherwise
an embedded throwaway server is started. No database available is an error, never a skip.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devtools import pg
from jobmon_core import Jobmon

from .tables import Rows

_schema_numbers = itertools.count(1)

# tests/prefect runs in Prefect's own environment (`make test` runs it there: the airflow and
# prefect extras conflict), so the Airflow environment leaves it out, and the other way round
collect_ignore = [] if importlib.util.find_spec("prefect") else ["prefect"]
if importlib.util.find_spec("airflow") is None:
    collect_ignore.append("airflow")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Server]:
    """The server under test, checked once: a server the tests cannot use (unreachable, not a
    superuser, no password logins for other roles) stops the run with one sentence saying
    what it needs, instead of failing each test with libpq's error."""
    with pg.server("JOBMON_TEST_DSN") as srv:
        problem = pg.setup_problem(srv, "JOBMON_TEST_DSN")
        if problem is not None:
            pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
        yield srv


@pytest.fixture(scope="session")
def dsn(pg_server: pg.Server) -> Iterator[str]:
    """A database of this test run's own, dropped at the end."""
    with pg.fresh_database(pg_server) as database_dsn:
        yield database_dsn


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test database, for setting up and inspecting."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def schema_name(dsn: str) -> Iterator[str]:
    """A schema name of this test's own; the schema is dropped after the test."""
    name = f"jm_test_{next(_schema_numbers)}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def jm(dsn: str, schema_name: str) -> Iterator[Jobmon]:
    """A Jobmon on a freshly installed schema of this test's own."""
    jobmon = Jobmon(dsn, schema=schema_name)
    jobmon.install()
    yield jobmon
    jobmon.close()


@pytest.fixture
def work(dsn: str) -> Iterator[psycopg.Connection]:
    """The job's own work connection (not autocommit), as a user's code would have it."""
    with psycopg.connect(dsn) as conn:
        yield conn


@pytest.fixture
def rows(admin: psycopg.Connection, jm: Jobmon) -> Rows:
    return Rows(admin, jm.schema)
