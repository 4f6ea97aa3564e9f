"""What pg-jobmon does with the *caller's* connection, and nothing more.

The logging connection does all the writing. The caller's work connection is only
- read, to record who runs a job and in which backend (``owner`` and ``pid`` of ``job_log``);
- used to run the caller's own SQL for ``sql_step``/``sql_job``, inside a savepoint so that
  a failing statement is rolled back without aborting the caller's transaction (what
  upstream's PL/pgSQL exception block does), and never committed by us.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import pq, sql

from . import validation
from .errors import InvalidArgumentError

_SAVEPOINT = sql.Identifier("pg_jobmon_sql")
SQL_LOCK_CLASS = "sql_log"  # upstream's advisory-lock key: (hashtext('sql_log'), hashtext(name))


def require_connection(conn: object) -> psycopg.Connection:
    if not isinstance(conn, psycopg.Connection):
        raise InvalidArgumentError(
            f"conn must be an open psycopg.Connection (the job's work connection), "
            f"not {type(conn).__name__}"
        )
    if conn.closed:
        raise InvalidArgumentError("conn is closed; pass the job's open work connection")
    return conn


def require_query(conn: psycopg.Connection, query: object) -> None:
    """Check the SQL of ``sql_step``/``sql_job`` before anything is logged: a str, bytes or
    :mod:`psycopg.sql` object, with no NUL (libpq would cut the statement at the NUL and run
    what comes before it: ``"DELETE FROM t\\x00 WHERE ..."`` would empty ``t``)."""
    if isinstance(query, sql.Composable):
        try:
            query = query.as_string(conn)
        except (psycopg.Error, UnicodeError) as exc:
            raise InvalidArgumentError(
                f"sql cannot be composed: {validation.storable(str(exc))}"
            ) from None
    if not isinstance(query, str | bytes):
        raise InvalidArgumentError(
            f"sql must be a str, bytes or psycopg.sql object, not {type(query).__name__}"
        )
    if "\x00" in query if isinstance(query, str) else b"\x00" in query:
        raise InvalidArgumentError(
            "sql contains a NUL character (\\x00); libpq would run only the part before it"
        )
    if isinstance(query, str):
        validation.text(query, "sql")


def identity(conn: psycopg.Connection) -> tuple[str, int]:
    """The caller's ``current_user`` and backend pid, read without disturbing its state.

    A query runs only where it cannot change the transaction state: in autocommit, inside an
    open transaction (a read-only SELECT), or in a transaction we start and roll back at
    once. In an aborted or busy transaction, the session user reported by the server stands
    in for ``current_user`` (they differ only under SET ROLE or SECURITY DEFINER).
    """
    pid = conn.info.backend_pid
    status = conn.info.transaction_status
    if status in (pq.TransactionStatus.INERROR, pq.TransactionStatus.ACTIVE):
        return _session_user(conn), pid
    started_here = status == pq.TransactionStatus.IDLE and not conn.autocommit
    try:
        row = conn.execute("SELECT current_user, pg_backend_pid()", prepare=False).fetchone()
    except psycopg.Error:
        return _session_user(conn), pid
    finally:
        if started_here:
            conn.rollback()
    if row is None:
        return _session_user(conn), pid
    # Behind a transaction pooler the pid the client was told is not the server's, and the
    # server's is shared with other clients: record 0, no session of its own (see writer).
    return row[0], (pid if row[1] == pid else 0)


def _session_user(conn: psycopg.Connection) -> str:
    return conn.info.parameter_status("session_authorization") or conn.info.user


def run_sql(conn: psycopg.Connection, query: Any, params: Any = None) -> int:
    """Run the caller's SQL on its connection; return the rows affected (0 if unknown).

    Outside autocommit the statement runs in a savepoint: on error it is rolled back and
    the caller's transaction stays usable; on success nothing is committed.
    """
    guarded = not conn.autocommit
    with conn.cursor() as cur:
        if guarded:
            cur.execute(sql.SQL("SAVEPOINT {}").format(_SAVEPOINT), prepare=False)
        try:
            cur.execute(query, params, prepare=False)
        except BaseException:
            # INERROR: the statement failed; INTRANS: it was never sent (its parameters
            # could not be adapted). Either way, leave no savepoint of ours behind.
            if guarded and conn.info.transaction_status in (
                pq.TransactionStatus.INERROR,
                pq.TransactionStatus.INTRANS,
            ):
                with contextlib.suppress(psycopg.Error):
                    cur.execute(
                        sql.SQL("ROLLBACK TO SAVEPOINT {}").format(_SAVEPOINT), prepare=False
                    )
                    cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(_SAVEPOINT), prepare=False)
            raise
        rows = max(cur.rowcount, 0)
        if guarded:
            cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(_SAVEPOINT), prepare=False)
        return rows


def try_sql_lock(conn: psycopg.Connection, job_name: str) -> bool:
    """Take upstream's session-level ``sql_job`` lock, keyed on the raw (not upper-cased) name."""
    row = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))",
        [SQL_LOCK_CLASS, job_name],
        prepare=False,
    ).fetchone()
    return bool(row and row[0])


def release_sql_lock(conn: psycopg.Connection, job_name: str) -> None:
    """Release the ``sql_job`` lock; a lost session has released it already."""
    with contextlib.suppress(psycopg.Error):
        conn.execute(
            "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))",
            [SQL_LOCK_CLASS, job_name],
            prepare=False,
        )


def error_text(exc: BaseException) -> str:
    """Upstream's step message for a failed statement: ``ERROR: <primary message>``; for a
    statement that could not even be sent (bad parameters), ``ERROR: TypeError: ...``."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary and not isinstance(exc, psycopg.Error):
        primary = f"{type(exc).__name__}: {str(exc).strip()}".rstrip(": ")
    return validation.storable(f"ERROR: {primary or str(exc).strip() or type(exc).__name__}")


def query_text(conn: psycopg.Connection, query: Any) -> str:
    """The SQL as text, for the ``Running sql: ...`` step of ``sql_job``."""
    if isinstance(query, sql.Composable):
        return query.as_string(conn)
    if isinstance(query, bytes):
        return query.decode(conn.info.encoding, errors="replace")
    return str(query)


def quote_literal(text: str) -> str:
    """PostgreSQL's ``quote_literal()``: double quotes, and E'' with doubled backslashes."""
    quoted = text.replace("'", "''")
    if "\\" in text:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"
