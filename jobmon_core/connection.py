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
- bounded waits in the server: ``lock_timeout`` and ``statement_timeout`` are given to the
  session at startup (libpq ``options``), so a logging call blocked by a lock held elsewhere,
  the job's own transaction included, fails with :class:`LockTimeoutError` instead of hanging;
- connection poolers: behind PgBouncer in transaction mode a client's statements run on
  whichever server connection is free, so nothing may live in the session. pg-jobmon keeps no
  session state (every ``SET`` is ``SET LOCAL``), and prepared statements, which do live in
  the session, are switched off when a pooler is detected: the backend pid the server
  announced at connect time is not the pid of the backend that runs our statements. A pooler
  that refuses the ``options`` startup parameter (PgBouncer before 1.20 says "unsupported
  startup parameter: options") gets a second connect without it, and one warning: the
  timeouts must then be set on the server (``ALTER ROLE ... SET lock_timeout``). What a
  pooler takes away for good: the session. ``pg_backend_pid()`` is then the pid of whichever
  pooled server connection ran the insert, one that outlives the job's process and that other
  clients use, so ``job_log.pid`` does not identify the job's session (see :attr:`pooled`).

Its neighbours, one job each: :mod:`jobmon_core.target` parses the connection string and
scrubs the password, :mod:`jobmon_core.session` and :mod:`jobmon_core.timeouts` say what the
session asks of the server, and :mod:`jobmon_core.translate` turns psycopg errors into
:mod:`jobmon_core.errors`. The names they define are importable from here too, as they
were before the split.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.abc import ConnDict
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import InvalidArgumentError, JobmonConnectionError
from .session import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, SessionSettings
from .target import (
    DEFAULT_APPLICATION_NAME,
    DEFAULT_CONNECT_TIMEOUT,
    ConnectionTarget,
    resolve_target,
)
from .timeouts import pg_value, timeout_ms
from .translate import translate_error

# LoggingConnection is defined here; the other names are re-exported for the importers of
# the module from before the split (cli, aio, the Airflow hook and trigger): new code imports
# them from their own modules.
__all__ = [
    "DEFAULT_APPLICATION_NAME",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "ConnectionTarget",
    "LoggingConnection",
    "SessionSettings",
    "resolve_target",
    "timeout_ms",
    "translate_error",
]

logger = logging.getLogger("jobmon_core")

T = TypeVar("T")

_POOLER_REFUSED_OPTIONS = re.compile(r"unsupported.*\boptions\b", re.IGNORECASE | re.DOTALL)
_NO_SETTINGS = SessionSettings()
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, target: ConnectionTarget, message: str, level: int) -> None:
    """Log ``message`` once per process and connection string (and ``key``)."""
    with _warned_lock:
        if (key, target.display) in _warned:
            return
        _warned.add((key, target.display))
    logger.log(level, "%s", target.redact(message))


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
        prepare: bool | None = None,
        settings: SessionSettings = _NO_SETTINGS,
        on_connect: Iterable[Callable[[psycopg.Connection], None]] = (),
    ) -> None:
        if prepare is not None and not isinstance(prepare, bool):
            raise InvalidArgumentError(
                "prepare must be True, False or None (None: on, unless a pooler is detected)"
            )
        self._target = target
        self._prepare = prepare
        self._settings = settings
        options = conninfo_to_dict(target.conninfo).get("options")
        self._dsn_options = None if options is None else str(options)
        self._options_refused = False  # a pooler refused the options startup parameter
        self._pooled: bool | None = None
        self._on_connect = tuple(on_connect)
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def target(self) -> ConnectionTarget:
        return self._target

    @property
    def settings(self) -> SessionSettings:
        return self._settings

    @property
    def pooled(self) -> bool | None:
        """Whether the last connection went through a connection pooler (PgBouncer...): the
        backend pid announced at connect time is not the one running our statements. None
        until a connection was opened and checked (it is checked unless ``prepare`` is
        explicit and no time-out is set)."""
        return self._pooled

    @property
    def prepared(self) -> bool:
        """Whether the current connection uses prepared statements."""
        return self._conn is not None and self._conn.prepare_threshold is not None

    def __repr__(self) -> str:
        state = "open" if self._conn is not None and not self._conn.closed else "idle"
        return f"<LoggingConnection {self._target.display!r} {state}>"

    def describe(self, setting: str) -> str:
        """How a time-out is set for the logging session, for messages."""
        if self._options_refused:
            return f"the server's {setting}; the pooler refused pg-jobmon's own"
        return self._settings.describe(setting, self._dsn_options)

    # -- life cycle ---------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            # A lock held by another thread at fork time would stay held forever in the child.
            self._lock = threading.Lock()
            if self._conn is not None:
                _detach_inherited(self._conn)
            self._conn = None
            self._pid = os.getpid()

    def _open(self, params: ConnDict) -> psycopg.Connection:
        return psycopg.connect(make_conninfo("", **params), autocommit=True)

    def _connect(self) -> psycopg.Connection:
        params: ConnDict = dict(conninfo_to_dict(self._target.conninfo))
        options = self._settings.options(self._dsn_options)
        if options and not self._options_refused:
            params["options"] = options
        else:
            params.pop("options", None)
        try:
            try:
                conn = self._open(params)
            except psycopg.OperationalError as exc:
                if "options" not in params or not _POOLER_REFUSED_OPTIONS.search(str(exc)):
                    raise
                self._options_refused = True
                self._pooled = True
                self._warn_timeouts_lost(options, "refused the startup parameter 'options'")
                del params["options"]
                conn = self._open(params)
        except psycopg.Error as exc:
            raise JobmonConnectionError(
                f"cannot connect to the jobmon database ({self._target.display}): "
                f"{self._target.redact(str(exc).strip())}"
            ) from None
        try:
            if self._prepare is None or "options" in params:
                self._inspect(conn, "options" in params)
            prepare = self._prepare if self._prepare is not None else not self._pooled
            # Prepared on first use: every logging statement is small and repeated many times.
            conn.prepare_threshold = 0 if prepare else None
            for setup in self._on_connect:
                setup(conn)
        except psycopg.Error as exc:
            conn.close()
            raise translate_error(exc, self._target, describe=self.describe) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _inspect(self, conn: psycopg.Connection, sent_options: bool) -> None:
        """Detect a pooler on a new connection, and whether it dropped our settings.

        A pooler hands the client a backend key of its own, so the pid in it is not the
        pid of the server backend that runs the statements. In transaction mode, a prepared
        statement lives on one server connection while our next statement may run on
        another: then prepared statements are off (unless ``prepare=True`` says the pooler
        tracks them, as PgBouncer 1.21+ with ``max_prepared_statements`` does).
        """
        names = list(self._settings.settings)
        row = conn.execute(
            "SELECT pg_backend_pid(), array(SELECT name::text FROM pg_catalog.pg_settings"
            " WHERE name = ANY(%s) AND source = 'client')",
            [names],
            prepare=False,
        ).fetchone()
        assert row is not None
        server_pid, applied = row
        self._pooled = server_pid != conn.info.backend_pid
        if not self._pooled:
            return
        if sent_options and set(applied) != set(names):
            self._warn_timeouts_lost(
                self._settings.options(None),
                "accepted the startup parameter 'options' but "
                "did not pass it on (ignore_startup_parameters)",
            )
        if self._prepare is None:
            _warn_once(
                "pooler",
                self._target,
                f"pg-jobmon: {self._target.display} is a connection pooler (the backend pid "
                "it announced is not the server's): prepared statements are off for the "
                "logging session. With PgBouncer 1.21+ and max_prepared_statements > 0 "
                "you may pass prepare=True.",
                logging.INFO,
            )

    def _warn_timeouts_lost(self, options: str | None, what: str) -> None:
        settings = self._settings.settings
        role = str(conninfo_to_dict(self._target.conninfo).get("user") or "<the logging role>")
        if settings:
            statements = "; ".join(
                sql.SQL("ALTER ROLE {} SET {} = {}")
                .format(sql.Identifier(role), sql.SQL(name), sql.Literal(pg_value(ms)))
                .as_string(None)
                for name, ms in settings.items()
            )
            advice = (
                f"Set them on the server instead ({statements}), then pass "
                "lock_timeout=None, statement_timeout=None (jobmon --lock-timeout 0 "
                '--statement-timeout 0; Airflow connection extra "pgbouncer": true) to '
                "silence this warning."
            )
        else:
            advice = "Set what they did on the server instead (ALTER ROLE ... SET ...)."
        _warn_once(
            "options",
            self._target,
            f"pg-jobmon: {self._target.display} (a connection pooler such as PgBouncer?) "
            f"{what}: the logging session runs without it, so {options!r} is not in effect "
            f"and a logging call blocked by a lock may wait without end. {advice}"
            + (" Prepared statements are off." if self._prepare is None else ""),
            logging.WARNING,
        )

    def connection(self) -> psycopg.Connection:
        """The live connection, opened if needed. Only for callers holding no lock of ours."""
        self._check_fork()
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection; the next call opens a new one. Never raises: the
        connection is forgotten before it is closed, so a failing close cannot leave it
        half-owned, and closing twice is harmless."""
        self._check_fork()
        with self._lock:
            self._discard()

    def cancel(self) -> None:
        """Ask the server to cancel the running statement (safe from a signal handler or
        another thread; does not wait for our lock). In a child of ``fork()`` that has not
        logged yet, the connection is still the parent's copy: its statement is not ours to
        cancel."""
        conn = self._conn
        if conn is not None and not conn.closed and self._pid == os.getpid():
            try:
                conn.cancel_safe(timeout=2)
            except Exception:
                logger.debug("could not cancel the jobmon statement", exc_info=True)

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the current session, or None when not connected (a connection
        inherited through ``fork()`` is the parent's, not ours)."""
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
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
                    raise translate_error(exc, self._target, describe=self.describe) from exc
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
                raise translate_error(exc, self._target, describe=self.describe) from exc

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("error closing a jobmon connection", exc_info=True)
