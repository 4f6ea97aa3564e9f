"""The logging connection: the one place where pg-jobmon talks to PostgreSQL.

Why a connection of its own: pg_jobmon's promise is that a logged step survives whatever the
job's own transaction does (rollback, abort, read-only). Upstream gets that by opening a new
dblink connection for every call. We keep one autocommit connection per process instead, so
every row is committed the moment the call returns, at the cost of one round trip.

This module owns that connection's life cycle:

- opened lazily on first use, in autocommit mode, with a bounded connect timeout;
- shared by all threads of the process (calls are serialised by a lock);
- replaced after ``fork()``: the child never touches the parent's socket, not even to close it;
- replaced when it breaks (backend killed, server restarted): the call that found it broken is
  run once more on a new connection. Callers make that safe by writing idempotent statements
  (see :mod:`jobmon_core.writer`), so a retried call lands exactly once;
- the translation of psycopg errors into :mod:`jobmon_core.errors`, with the password scrubbed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import (
    DatabaseError,
    InvalidArgumentError,
    JobmonConnectionError,
    JobmonError,
    JobmonPermissionError,
    SchemaNotInstalledError,
)

logger = logging.getLogger("jobmon_core")

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds libpq waits for the server when the connection string does not say."""

DEFAULT_APPLICATION_NAME = "pg-jobmon"
REDACTED = "********"


@dataclass(frozen=True)
class ConnectionTarget:
    """A parsed connection string: what to connect with, and what may be shown to people.

    ``conninfo`` holds the password (libpq needs it); ``display`` never does, and
    ``secrets`` lists the strings that must be scrubbed from anything we print or raise.
    """

    conninfo: str
    display: str
    secrets: tuple[str, ...]

    def redact(self, text: str) -> str:
        """``text`` on one line (libpq's messages span several), every secret replaced."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return " ".join(text.split())


def resolve_target(
    dsn: str | None,
    *,
    application_name: str = DEFAULT_APPLICATION_NAME,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
) -> ConnectionTarget:
    """Parse ``dsn`` (URI or key=value; ``None`` means ``JOBMON_DSN``, else libpq's defaults).

    Our defaults for ``application_name`` and ``connect_timeout`` apply only where the
    connection string is silent, so a user's explicit setting always wins.
    """
    if dsn is None:
        dsn = os.environ.get("JOBMON_DSN", "")
    if not isinstance(dsn, str):
        raise InvalidArgumentError(
            f"dsn must be a libpq connection string (str) or None, not {type(dsn).__name__}"
        )
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq's message quotes fragments of the string, which may be the password: say
        # what is wrong without echoing any of it.
        raise InvalidArgumentError(
            "the connection string is not valid libpq syntax: use a URI "
            "(postgresql://user@host:5432/db) or key=value pairs (host=... dbname=...); "
            "quote values holding spaces with single quotes"
        ) from None
    params.setdefault("application_name", application_name)
    params.setdefault("connect_timeout", str(connect_timeout))
    secrets = [str(params["password"])] if params.get("password") else []
    if os.environ.get("PGPASSWORD"):
        secrets.append(os.environ["PGPASSWORD"])
    shown = {k: v for k, v in params.items() if k != "password"}
    return ConnectionTarget(
        conninfo=make_conninfo("", **params),
        display=make_conninfo("", **shown),
        secrets=tuple(s for s in secrets if s),
    )


def translate_error(exc: psycopg.Error, target: ConnectionTarget) -> JobmonError:
    """Turn a psycopg error into the matching :class:`JobmonError`, password scrubbed."""
    message = target.redact(str(exc).strip()) or type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
        return SchemaNotInstalledError(
            f"the jobmon tables are missing ({message}); "
            "run Jobmon.install() or `jobmon install` on this database and schema"
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return JobmonPermissionError(
            f"permission denied: {message}; grant the logging role the rights it needs",
            sqlstate=sqlstate,
        )
    if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
        return DatabaseError(f"the logging statement gave up waiting: {message}", sqlstate=sqlstate)
    if isinstance(exc, psycopg.OperationalError) and sqlstate is None:
        return JobmonConnectionError(
            f"cannot reach the jobmon database ({target.display}): {message}"
        )
    return DatabaseError(f"the database refused a jobmon statement: {message}", sqlstate=sqlstate)


def _is_connection_lost(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    """True when ``exc`` means the session is gone, so a new connection may succeed."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    return isinstance(exc, pg_errors.AdminShutdown | pg_errors.CrashShutdown)


def _detach_inherited(conn: psycopg.Connection) -> None:
    """Forget a connection inherited through ``fork()`` without disturbing the parent.

    Closing it normally would send libpq's Terminate message over the socket the parent still
    uses, ending the parent's session. Pointing our copy of the descriptor at /dev/null first
    makes that message go nowhere; the parent's descriptor is untouched.
    """
    try:
        fd = conn.fileno()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        conn.close()
    except Exception:  # the child must go on whatever state the copy is in
        logger.debug("could not detach an inherited jobmon connection", exc_info=True)


class LoggingConnection:
    """A lazily opened, autocommit, fork-safe, self-healing connection used for log writes.

    ``run(operation)`` calls ``operation(conn, retrying)`` under the connection lock. When the
    connection turns out to be broken, it is replaced and the operation is called once more
    with ``retrying=True``; operations use that flag to make a second attempt idempotent.
    """

    def __init__(
        self,
        target: ConnectionTarget,
        *,
        prepare: bool = True,
        on_connect: Iterable[Callable[[psycopg.Connection], None]] = (),
    ) -> None:
        self._target = target
        self._prepare = prepare
        self._on_connect = tuple(on_connect)
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def target(self) -> ConnectionTarget:
        return self._target

    def __repr__(self) -> str:
        state = "open" if self._conn is not None and not self._conn.closed else "idle"
        return f"<LoggingConnection {self._target.display!r} {state}>"

    # -- life cycle ---------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            # A lock held by another thread at fork time would stay held forever in the child.
            self._lock = threading.Lock()
            if self._conn is not None:
                _detach_inherited(self._conn)
            self._conn = None
            self._pid = os.getpid()

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self._target.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise JobmonConnectionError(
                f"cannot connect to the jobmon database ({self._target.display}): "
                f"{self._target.redact(str(exc).strip())}"
            ) from None
        # Prepared on first use: every logging statement is small and repeated many times.
        conn.prepare_threshold = 0 if self._prepare else None
        try:
            for setup in self._on_connect:
                setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def connection(self) -> psycopg.Connection:
        """The live connection, opened if needed. Only for callers holding no lock of ours."""
        self._check_fork()
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        self._check_fork()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def cancel(self) -> None:
        """Ask the server to cancel the running statement (safe from a signal handler or
        another thread; does not wait for our lock)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel_safe(timeout=2)
            except Exception:
                logger.debug("could not cancel the jobmon statement", exc_info=True)

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the current session, or None when not connected."""
        if self._conn is None or self._conn.closed:
            return None
        return self._conn.info.backend_pid

    # -- running operations -------------------------------------------------------------------

    def run(self, operation: Callable[[psycopg.Connection, bool], T]) -> T:
        """Run ``operation`` on the connection; replace a broken connection and retry once."""
        self._check_fork()
        with self._lock:
            conn = None
            try:
                conn = self.connection()
                return operation(conn, False)
            except psycopg.Error as exc:
                if not _is_connection_lost(exc, conn):
                    raise translate_error(exc, self._target) from exc
                logger.warning(
                    "jobmon logging connection lost (%s); reconnecting and retrying once",
                    self._target.redact(str(exc).strip()),
                )
            self._discard()
            try:
                conn = self.connection()
                return operation(conn, True)
            except psycopg.Error as exc:
                if _is_connection_lost(exc, conn):
                    self._discard()
                    raise JobmonConnectionError(
                        f"lost the connection to the jobmon database ({self._target.display}) "
                        f"twice in a row: {self._target.redact(str(exc).strip())}"
                    ) from None
                raise translate_error(exc, self._target) from exc

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                logger.debug("error closing a broken jobmon connection", exc_info=True)
            self._conn = None
