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
  clients use, so ``job_log.pid`` does not identify the job's session (see :attr:`pooled`);
- the translation of psycopg errors into :mod:`jobmon_core.errors`, with the password scrubbed.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import (
    DatabaseError,
    InvalidArgumentError,
    JobmonConnectionError,
    JobmonError,
    JobmonPermissionError,
    LockTimeoutError,
    SchemaNotInstalledError,
    StatementTimeoutError,
)

logger = logging.getLogger("jobmon_core")

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds libpq waits for the server when the connection string does not say."""

DEFAULT_APPLICATION_NAME = "pg-jobmon"
REDACTED = "********"

DEFAULT_LOCK_TIMEOUT = 5.0
"""Seconds a logging statement waits for a lock before it gives up (``lock_timeout``). A log
write takes no lock that a healthy system holds for long: a wait this long means a long
transaction, a ``LOCK``/``TRUNCATE``/``ALTER`` on the jobmon tables, or the job's own
transaction holding what the write needs, which would otherwise be a wait without end."""

DEFAULT_STATEMENT_TIMEOUT = 15.0
"""Seconds any statement of the logging session may run (``statement_timeout``): a log write
takes a millisecond; checks, reports and ``job_log_clear`` batches share the session and stay
well below this on large logs. :meth:`Jobmon.install` uses a session of its own, unbounded."""

_MAX_TIMEOUT_MS = 2**31 - 1  # the largest value PostgreSQL accepts (about 24.8 days)
_POOLER_REFUSED_OPTIONS = re.compile(r"unsupported.*\boptions\b", re.IGNORECASE | re.DOTALL)
_PREPARED_STATEMENT_STATES = ("26000", "42P05")  # does not exist / already exists
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, target: ConnectionTarget, message: str, level: int) -> None:
    """Log ``message`` once per process and connection string (and ``key``)."""
    with _warned_lock:
        if (key, target.display) in _warned:
            return
        _warned.add((key, target.display))
    logger.log(level, "%s", target.redact(message))


def timeout_ms(value: object, what: str) -> int | None:
    """A timeout argument as whole milliseconds; ``None`` when it is None or zero.

    ``value`` is a number of seconds (int or float) or a :class:`datetime.timedelta`.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidArgumentError(
            f"{what} must be a number of seconds, a datetime.timedelta or None, "
            f"not {type(value).__name__}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgumentError(f"{what} must be zero or more seconds, not {value!r}")
    if seconds == 0:
        return None
    # compared in seconds first: seconds * 1000 of a huge float is inf, which round() refuses
    too_long = seconds > _MAX_TIMEOUT_MS / 1000
    ms = _MAX_TIMEOUT_MS + 1 if too_long else max(1, round(seconds * 1000))
    if ms > _MAX_TIMEOUT_MS:
        raise InvalidArgumentError(
            f"{what} must be at most {_MAX_TIMEOUT_MS // 1000} seconds (PostgreSQL's limit); "
            "use None for no limit"
        )
    return ms


def _option_names(options: str | None) -> set[str]:
    """The settings named by ``-c name=value`` / ``--name=value`` in libpq ``options``."""
    found = re.findall(r"(?:^|\s)(?:-c\s*|--)([\w.-]+)=", options or "")
    return {name.replace("-", "_").lower() for name in found}


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g} s"


def _pg_value(ms: int) -> str:
    """A time-out as PostgreSQL reads it: ``5s``, ``300ms``."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class SessionSettings:
    """What the logging session asks of the server at startup: its two time-outs, in ms."""

    lock_timeout: int | None = None
    statement_timeout: int | None = None

    @classmethod
    def create(cls, lock_timeout: object, statement_timeout: object) -> SessionSettings:
        return cls(
            timeout_ms(lock_timeout, "lock_timeout"),
            timeout_ms(statement_timeout, "statement_timeout"),
        )

    @property
    def settings(self) -> dict[str, int]:
        found = {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout}
        return {name: ms for name, ms in found.items() if ms is not None}

    def options(self, dsn_options: str | None) -> str | None:
        """The libpq ``options`` to connect with: ours first, then those of the connection
        string, so that its own ``-c lock_timeout=...`` wins (PostgreSQL applies them in
        order)."""
        ours = " ".join(f"-c {name}={_pg_value(ms)}" for name, ms in self.settings.items())
        return " ".join(part for part in (ours, dsn_options) if part) or None

    def describe(self, name: str, dsn_options: str | None) -> str:
        """How ``name`` is set for the session, for error messages."""
        if name in _option_names(dsn_options):
            return f"{name} as set in the options of the connection string"
        ms = self.settings.get(name)
        return f"{name} = {_seconds(ms)}" if ms is not None else f"the server's {name}"


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
    # libpq would cut the string at a NUL, and a lone surrogate (undecodable bytes in argv or
    # JOBMON_DSN) has no UTF-8 form: refuse both, without echoing the string (a password).
    if "\x00" in dsn or dsn.encode("utf-8", "replace").decode("utf-8") != dsn:
        raise InvalidArgumentError(
            "the connection string contains a NUL character or bytes that are not valid "
            "UTF-8; pass it as proper text"
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


def translate_error(
    exc: psycopg.Error,
    target: ConnectionTarget,
    *,
    describe: Callable[[str], str] | None = None,
) -> JobmonError:
    """Turn a psycopg error into the matching :class:`JobmonError`, password scrubbed.

    ``describe(setting)`` says how a time-out is set for the session ("lock_timeout = 5 s"),
    for the messages of the time-out errors.
    """
    message = target.redact(str(exc).strip()) or type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if describe is None:

        def describe(name: str) -> str:
            return name

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
    if isinstance(exc, pg_errors.LockNotAvailable):
        return LockTimeoutError(
            f"a jobmon statement gave up waiting for a lock ({describe('lock_timeout')}): "
            f"{message}. Another session holds a lock on the jobmon tables: a long "
            "transaction that wrote to or locked them (the job's own transaction too: "
            "pg-jobmon logs on a session of its own, which waits for the locks yours holds; "
            "commit or roll back before logging), or a LOCK, TRUNCATE or ALTER TABLE. The "
            "statement was rolled back: retry it once the lock is released "
            "(pg_blocking_pids() on the server names the holder), or raise lock_timeout if "
            "such waits are expected",
            sqlstate=sqlstate,
        )
    if isinstance(exc, pg_errors.QueryCanceled):
        if "statement timeout" in message:
            return StatementTimeoutError(
                f"a jobmon statement ran too long ({describe('statement_timeout')}) and was "
                f"cancelled: {message}. It was rolled back. A log write takes milliseconds, "
                "so the server is overloaded or the statement waited for a lock; for a check "
                "or job_log_clear on a very large log, raise statement_timeout "
                "(Jobmon(statement_timeout=...), jobmon --statement-timeout) or lower "
                "batch_size",
                sqlstate=sqlstate,
            )
        return DatabaseError(
            f"the jobmon statement was cancelled ({message}) by Jobmon.cancel(), "
            "pg_cancel_backend() or a pooler's query_timeout; it was rolled back",
            sqlstate=sqlstate,
        )
    if sqlstate in _PREPARED_STATEMENT_STATES:
        return DatabaseError(
            f"a prepared statement of pg-jobmon went missing or collided ({message}): a "
            "connection pooler in transaction mode (PgBouncer before 1.21, or without "
            "max_prepared_statements) runs the statements of one client on several server "
            "connections. Use prepare=False (jobmon --no-prepare, Airflow extra "
            '"prepare": false), or leave prepare=None so that pg-jobmon detects the pooler',
            sqlstate=sqlstate,
        )
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
        prepare: bool | None = None,
        settings: SessionSettings = SessionSettings(),
        on_connect: Iterable[Callable[[psycopg.Connection], None]] = (),
    ) -> None:
        if prepare is not None and not isinstance(prepare, bool):
            raise InvalidArgumentError(
                "prepare must be True, False or None (None: on, unless a pooler is detected)"
            )
        self._target = target
        self._prepare = prepare
        self._settings = settings
        self._dsn_options = conninfo_to_dict(target.conninfo).get("options")
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

    def _open(self, params: dict[str, object]) -> psycopg.Connection:
        return psycopg.connect(make_conninfo("", **params), autocommit=True)  # type: ignore[arg-type]

    def _connect(self) -> psycopg.Connection:
        params: dict[str, object] = conninfo_to_dict(self._target.conninfo)
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
        role = conninfo_to_dict(self._target.conninfo).get("user") or "<the logging role>"
        if settings:
            statements = "; ".join(
                sql.SQL("ALTER ROLE {} SET {} = {}")
                .format(sql.Identifier(role), sql.SQL(name), sql.Literal(_pg_value(ms)))
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
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                logger.debug("error closing a broken jobmon connection", exc_info=True)
            self._conn = None
