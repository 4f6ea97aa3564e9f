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
import subprocess
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


class PrivateCluster:
    """A PostgreSQL cluster of a test's own, which the test may stop, crash and start again.

    The shared test server cannot be restarted under the other tests' feet, so fault tests
    that need a server restart get this instead: ``initdb`` into a temporary directory,
    listening on a Unix socket in that directory only, run as an unprivileged system user
    when we are root (PostgreSQL refuses to run as root). ``bindir`` picks the binaries;
    :func:`private_cluster` matches the major version of the server under test.
    """

    def __init__(self, bindir: str, run_as: str | None) -> None:
        self._bindir = bindir
        self._run_as = run_as
        self.datadir = tempfile.mkdtemp(prefix="pg-jobmon-own-")
        if run_as is not None:
            shutil.chown(self.datadir, run_as, run_as)
        self.dsn = make_conninfo("", host=self.datadir, port="5432", user="postgres")
        self._pg(["initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8"])

    def _pg(self, argv: list[str]) -> None:
        command = [os.path.join(self._bindir, argv[0]), *argv[1:]]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-c listen_addresses='' -k {self.datadir} -c fsync=off"
        log = os.path.join(self.datadir, "server.log")
        self._pg(["pg_ctl", "-D", self.datadir, "-w", "-l", log, "-o", options, "start"])

    def stop(self, mode: str = "fast") -> None:
        """``fast`` is a clean shutdown; ``immediate`` is a crash (recovery on next start)."""
        self._pg(["pg_ctl", "-D", self.datadir, "-w", "-m", mode, "stop"])

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)


def _binaries_for(major: int) -> tuple[str, str | None]:
    """PostgreSQL binaries of ``major`` (the system's, else pgserver's), and whom to run as."""
    root = os.geteuid() == 0
    system = f"/usr/lib/postgresql/{major}/bin"
    if os.path.isfile(os.path.join(system, "initdb")):
        return system, ("postgres" if root else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import _commands, utils  # dev dependency

    if root:
        utils.ensure_user_exists("pgserver")
        utils.ensure_prefix_permissions(_commands.POSTGRES_BIN_PATH)
    return str(_commands.POSTGRES_BIN_PATH), ("pgserver" if root else None)


@contextlib.contextmanager
def private_cluster(major: int) -> Iterator[PrivateCluster]:
    """A started :class:`PrivateCluster` of the given major version, removed afterwards."""
    bindir, run_as = _binaries_for(major)
    cluster = PrivateCluster(bindir, run_as)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
