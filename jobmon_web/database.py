"""The page's only door to PostgreSQL: every request is one READ ONLY transaction run as
the monitor role, so nothing the page serves can write, whatever login it connects with.

Read-only by design, twice over:

- each transaction starts with ``SET TRANSACTION READ ONLY``: the server refuses any
  INSERT, UPDATE, DELETE or DDL in it, even from a superuser login;
- it then runs ``SET LOCAL ROLE`` to the monitor role of ``create_roles``
  (``jobmon_monitor``), whose privileges are reads: a superuser or the schema owner's login
  loses its rights for the transaction.

Both are transaction-local (``SET LOCAL``), so the connections keep no session state and
work through PgBouncer in transaction mode too, and a ``statement_timeout`` of their own
bounds every page's queries. Connections come from a small pool opened on first use (a
plugin's app is built when Airflow imports it, long before anyone opens the page) and
closed by :meth:`ReadOnlyDatabase.close`. Errors become :class:`~jobmon_core.JobmonError`
with the password scrubbed, as everywhere in pg-jobmon.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from jobmon_core.errors import (
    InvalidArgumentError,
    JobmonConnectionError,
    JobmonError,
    JobmonPermissionError,
)
from jobmon_core.roles import DEFAULT_MONITOR, role_name
from jobmon_core.target import ConnectionTarget, resolve_target
from jobmon_core.translate import translate_error

T = TypeVar("T")

APPLICATION_NAME = "pg-jobmon-web"
DEFAULT_STATEMENT_TIMEOUT = 5.0  # seconds: a page that takes longer is broken, not slow
DEFAULT_CONNECT_TIMEOUT = 5
MAX_CONNECTIONS = 4

DsnSource = str | Callable[[], tuple[str, str]] | None
"""A connection string, or a function giving one and the jobmon schema's name when the first
page is opened (the Airflow plugin looks its connection up then, never at import time)."""


class ReadOnlyDatabase:
    """Read-only access to one jobmon schema, as the monitor role.

    ``dsn``: a libpq connection string (``None``: ``JOBMON_DSN``, else libpq's variables),
    or a function returning one and the schema (which then replaces ``schema``). ``role``:
    the role every transaction runs as (the login must be a member of it, or a superuser):
    the monitor role of ``create_roles``.
    """

    def __init__(
        self,
        dsn: DsnSource = None,
        *,
        schema: str = "jobmon",
        role: str = DEFAULT_MONITOR,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.schema = _schema(schema)
        self.role = role_name(role, "monitor role")
        if not 0 < statement_timeout <= 3600:
            raise InvalidArgumentError("statement_timeout must be above 0, at most 3600 seconds")
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._wait = float(connect_timeout)
        self._max_connections = max_connections
        self._begin = sql.SQL(
            "SET TRANSACTION READ ONLY; SET LOCAL ROLE {}; SET LOCAL statement_timeout = {}"
        ).format(sql.Identifier(self.role), sql.Literal(int(statement_timeout * 1000)))
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._target: ConnectionTarget | None = None

    @property
    def target(self) -> ConnectionTarget:
        """The connection string (its ``display`` form holds no password)."""
        self._open()
        assert self._target is not None
        return self._target

    def _open(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                dsn = self._source()
                self._target = resolve_target(
                    dsn, application_name=APPLICATION_NAME, connect_timeout=self._connect_timeout
                )
                self._wait = _connect_timeout(self._target)
                pool: ConnectionPool = ConnectionPool(
                    self._target.conninfo,
                    min_size=0,
                    max_size=self._max_connections,
                    # autocommit: each request opens its own transaction (read-only, below);
                    # never prepared, so a transaction pooler in front is fine
                    kwargs={"autocommit": True, "prepare_threshold": None},
                    check=ConnectionPool.check_connection,
                    timeout=self._wait,
                    name="pg-jobmon-web",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _source(self) -> str | None:
        if not callable(self._dsn):
            return self._dsn
        try:
            dsn, schema = self._dsn()
        except JobmonError:
            raise
        except Exception as exc:  # the orchestrator's lookup: a missing connection, say
            raise JobmonConnectionError(f"cannot find the jobmon connection: {exc}") from None
        self.schema = _schema(schema)
        return dsn

    def read(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(conn)`` inside one READ ONLY transaction run as the monitor role."""
        pool = self._open()
        assert self._target is not None
        try:
            with pool.connection() as conn, conn.transaction():
                self._enter(conn)
                return work(conn)
        except PoolTimeout:
            raise JobmonConnectionError(
                f"cannot reach the jobmon database ({self._target.display}) within {self._wait:g} s"
            ) from None
        except psycopg.Error as exc:
            raise translate_error(exc, self._target) from None

    def _enter(self, conn: psycopg.Connection) -> None:
        try:
            conn.execute(self._begin)
        except (pg_errors.InsufficientPrivilege, pg_errors.InvalidParameterValue) as exc:
            assert self._target is not None
            raise JobmonPermissionError(
                f"the page runs as the monitor role {self.role!r} (read-only by design), and "
                f"this login cannot: {self._target.redact(exc.diag.message_primary or '')}. "
                "Create the roles with `jobmon install --create-roles` (as the schema's "
                f"owner) and GRANT {self.role} TO the login of the page's connection, or name "
                "another monitor role (jobmon web --role)",
                sqlstate=exc.sqlstate,
            ) from None

    def close(self) -> None:
        """Close the pool's connections (idempotent); a later read opens a new pool."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _connect_timeout(target: ConnectionTarget) -> float:
    """How long to wait for a connection: the connection string's own ``connect_timeout``
    (resolve_target sets ours where it is silent), as libpq would."""
    text = str(conninfo_to_dict(target.conninfo)["connect_timeout"])
    try:
        seconds = float(text)
    except ValueError:
        raise InvalidArgumentError(
            f"connect_timeout must be a number of seconds, not {text!r}"
        ) from None
    return max(seconds, 1.0)


def _schema(name: str) -> str:
    """A schema name usable in every statement (psycopg reads any ``%`` as a placeholder)."""
    if not isinstance(name, str) or not name or "%" in name:
        raise InvalidArgumentError(f"the jobmon schema must be a name without '%', not {name!r}")
    return name
