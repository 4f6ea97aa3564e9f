"""Async variants of the read-only checks, for event loops (e.g. Airflow's triggerer).

They open a short-lived :class:`psycopg.AsyncConnection` per call and run the very same
statements as :class:`~jobmon_core.checker.Checker`: no monitoring logic of their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import class_row

from .alerts import Alert
from .checker import RunState, check_statement, history_error, run_state_statement
from .errors import JobmonConnectionError
from .target import ConnectionTarget
from .translate import translate_error


async def _connect(target: ConnectionTarget) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(target.conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise JobmonConnectionError(
            f"cannot connect to the jobmon database ({target.display}): {target.redact(str(exc))}"
        ) from None


async def check_job_status(
    target: ConnectionTarget, schema: str, history: timedelta | None = None
) -> list[Alert]:
    """``Jobmon.check_job_status`` over an async connection (no plugin calls)."""
    query, params = check_statement(schema, "check_job_status", history)
    conn = await _connect(target)
    try:
        async with conn.cursor(row_factory=class_row(Alert)) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()
    except pg_errors.InvalidParameterValue as exc:
        raise history_error(exc, history) from None
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    finally:
        await conn.close()


async def run_state(
    target: ConnectionTarget, schema: str, job_name: str, since: datetime
) -> RunState:
    """``Jobmon.run_state`` over an async connection."""
    query, params = run_state_statement(schema, job_name, since)
    conn = await _connect(target)
    try:
        cur = await conn.execute(query, params)
        return RunState.from_row(await cur.fetchone())
    except psycopg.Error as exc:
        raise translate_error(exc, target) from exc
    finally:
        await conn.close()
