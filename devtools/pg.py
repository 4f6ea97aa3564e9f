"""A real PostgreSQL for tests, the demo and benchmarks, with nothing left behind.

``JOBMON_TEST_DSN`` (or whichever variable the caller names) points at an existing server;
otherwise an embedded throwaway server is started with ``pgserver`` (PostgreSQL binaries
shipped in a wheel; it works as root) in a temporary directory that is deleted at exit.
On either server, :func:`fresh_database` creates a database of its own and drops it after.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass
class Server:
    """A running PostgreSQL server and a superuser connection string for it."""

    dsn: str
    embedded: object | None = None  # the pgserver handle, when we started the server

    @property
    def version(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.info.server_version

    def dsn_for(self, dbname: str) -> str:
        params = conninfo_to_dict(self.dsn)
        params["dbname"] = dbname
        return make_conninfo("", **params)


@contextlib.contextmanager
def server(env_var: str = "JOBMON_TEST_DSN") -> Iterator[Server]:
    """The server named by ``env_var``, else an embedded one that is removed afterwards."""
    dsn = os.environ.get(env_var)
    if dsn:
        yield Server(dsn)
        return
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver  # dev dependency: only needed when no server is given

    datadir = tempfile.mkdtemp(prefix="pg-jobmon-")
    handle = pgserver.get_server(datadir, cleanup_mode="delete")
    try:
        yield Server(handle.get_uri(), embedded=handle)
    finally:
        handle.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(srv: Server, prefix: str = "jobmon_test") -> Iterator[str]:
    """Create a new database, yield its connection string, drop it (and its sessions) after."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(srv.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield srv.dsn_for(name)
    finally:
        with psycopg.connect(srv.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
