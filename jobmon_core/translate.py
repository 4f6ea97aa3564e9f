"""psycopg errors as :mod:`jobmon_core.errors`: a typed error with a message that says what to do.

One job: map a psycopg error (by class and SQLSTATE) to the :class:`JobmonError` a user can
catch, with the password scrubbed from the server's message and advice on the likely cause
(a missing schema, a privilege, a lock held by the job's own transaction, a pooler).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import errors as pg_errors

from .errors import (
    DatabaseError,
    JobmonConnectionError,
    JobmonError,
    JobmonPermissionError,
    LockTimeoutError,
    SchemaNotInstalledError,
    StatementTimeoutError,
)
from .target import ConnectionTarget

_PREPARED_STATEMENT_STATES = ("26000", "42P05")  # does not exist / already exists


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
