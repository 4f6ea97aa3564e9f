"""The checker: run the schema's ``check_job_status`` and manage ``job_check_config``.

The rules live in SQL (migration 0003) so that SQL-only users (check_postgres custom queries,
Grafana, pg_jobmon 1.4 scripts) get exactly what Python gets. This module only calls them,
turns rows into :class:`Alert` objects and validates configuration before writing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import class_row, tuple_row

from . import validation
from .alerts import Alert
from .connection import LoggingConnection
from .errors import InvalidArgumentError

MAX_SENSITIVITY = 32767  # smallint


class CheckHistoryError(InvalidArgumentError):
    """The history window is shorter than the longest active threshold (upstream's guard)."""


@dataclass(frozen=True)
class CheckConfig:
    """One ``job_check_config`` row."""

    job_name: str
    warn_threshold: timedelta
    error_threshold: timedelta
    active: bool
    sensitivity: int
    escalate: int | None


def history_interval(history: object, what: str = "history") -> timedelta | None:
    """Check a window or threshold: a ``timedelta`` of zero or more, or None."""
    if history is None:
        return None
    if not isinstance(history, timedelta):
        raise InvalidArgumentError(
            f"{what} must be a datetime.timedelta, not {type(history).__name__}"
        )
    if history < timedelta(0):
        raise InvalidArgumentError(f"{what} must not be negative, got {history}")
    return history


class Checker:
    """``check_job_status`` and ``job_check_config`` of one schema."""

    def __init__(self, connection: LoggingConnection, schema: str) -> None:
        self._connection = connection
        self._schema = schema

    def _fn(self, name: str) -> sql.Identifier:
        return sql.Identifier(self._schema, name)

    def _run_check(
        self, function: str, history: timedelta | None, columns: str, row_factory: Any
    ) -> list[Any]:
        """Call a check function, with the window or without (its default window)."""
        history = history_interval(history)
        arguments = sql.SQL("()") if history is None else sql.SQL("(%s)")
        query = sql.SQL("SELECT {} FROM {}{}").format(
            sql.SQL(columns), self._fn(function), arguments
        )
        params = None if history is None else [history]

        def check(conn: psycopg.Connection, _: bool) -> list[Any]:
            try:
                with conn.cursor(row_factory=row_factory) as cur:
                    return cur.execute(query, params).fetchall()
            except pg_errors.InvalidParameterValue as exc:
                hint = exc.diag.message_hint or ""
                raise CheckHistoryError(f"{exc.diag.message_primary} ({history}). {hint}") from None

        return self._connection.run(check)

    def check_job_status(self, history: timedelta | None = None) -> list[Alert]:
        return self._run_check("check_job_status", history, "*", class_row(Alert))

    def check_summary(self, history: timedelta | None = None) -> Alert:
        ((code, text),) = self._run_check(
            "check_job_summary", history, "alert_code, alert_text", tuple_row
        )
        return Alert(alert_code=code, alert_status=None, job_name=None, alert_text=text)

    def configure_check(
        self,
        job_name: str,
        *,
        warn: timedelta,
        error: timedelta,
        sensitivity: int = 0,
        escalate: int | None = None,
        active: bool = True,
    ) -> CheckConfig:
        validation.name(job_name)
        warn = _threshold(warn, "warn")
        error = _threshold(error, "error")
        if error < warn:
            raise InvalidArgumentError(
                f"error threshold ({error}) must not be shorter than warn threshold ({warn})"
            )
        if isinstance(sensitivity, bool) or not isinstance(sensitivity, int):
            raise InvalidArgumentError("sensitivity must be an int (failures tolerated per level)")
        if not 0 <= sensitivity <= MAX_SENSITIVITY:
            raise InvalidArgumentError(
                f"sensitivity must be 0..{MAX_SENSITIVITY}, not {sensitivity}"
            )
        if escalate is not None and (
            isinstance(escalate, bool) or not isinstance(escalate, int) or escalate < 1
        ):
            raise InvalidArgumentError(
                f"escalate must be None or an int of 1 or more, not {escalate!r}"
            )
        if not isinstance(active, bool):
            raise InvalidArgumentError("active must be True or False")
        query = sql.SQL(
            "INSERT INTO {} AS c (job_name, warn_threshold, error_threshold, active, sensitivity,"
            " escalate) VALUES (upper(%(name)s), %(warn)s, %(error)s, %(active)s, %(sens)s,"
            " %(esc)s)"
            " ON CONFLICT (job_name) DO UPDATE SET warn_threshold = EXCLUDED.warn_threshold,"
            " error_threshold = EXCLUDED.error_threshold, active = EXCLUDED.active,"
            " sensitivity = EXCLUDED.sensitivity, escalate = EXCLUDED.escalate"
            " RETURNING c.*"
        ).format(self._fn("job_check_config"))
        params = {
            "name": job_name,
            "warn": warn,
            "error": error,
            "active": active,
            "sens": sensitivity,
            "esc": escalate,
        }

        def write(conn: psycopg.Connection, _: bool) -> CheckConfig:
            with conn.cursor(row_factory=class_row(CheckConfig)) as cur:
                return cur.execute(query, params).fetchone()  # type: ignore[return-value]

        return self._connection.run(write)

    def remove_check(self, job_name: str) -> bool:
        validation.name(job_name)
        query = sql.SQL("DELETE FROM {} WHERE job_name = upper(%s)").format(
            self._fn("job_check_config")
        )
        return self._connection.run(lambda conn, _: conn.execute(query, [job_name]).rowcount > 0)

    def list_checks(self) -> list[CheckConfig]:
        query = sql.SQL("SELECT * FROM {} ORDER BY job_name").format(self._fn("job_check_config"))

        def read(conn: psycopg.Connection, _: bool) -> list[CheckConfig]:
            with conn.cursor(row_factory=class_row(CheckConfig)) as cur:
                return cur.execute(query).fetchall()

        return self._connection.run(read)


def _threshold(value: object, what: str) -> timedelta:
    if value is None:
        raise InvalidArgumentError(f"{what} threshold is required (a datetime.timedelta)")
    threshold = history_interval(value, f"{what} threshold")
    assert threshold is not None
    if threshold <= timedelta(0):
        raise InvalidArgumentError(f"{what} threshold must be longer than zero, got {threshold}")
    return threshold
