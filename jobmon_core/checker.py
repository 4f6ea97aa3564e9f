"""The checker: run the schema's ``check_job_status`` and manage ``job_check_config``.

The rules live in SQL (migration 0003) so that SQL-only users (check_postgres custom queries,
Grafana, pg_jobmon 1.4 scripts) get exactly what Python gets. This module only calls them,
turns rows into :class:`Alert` objects and validates configuration before writing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
    """Check a window or threshold: a ``timedelta`` of zero to 1000 years, or None."""
    if history is None:
        return None
    return validation.duration(history, what)


@dataclass(frozen=True)
class RunState:
    """Where the latest run of a job since a moment stands, for sensors that wait for it.

    ``state`` is ``waiting`` (no run started since then), ``running``, ``succeeded``
    (finished with the text of alert code 1) or ``failed`` (any other finish).
    """

    state: str
    job_id: int | None = None
    status: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...] | None) -> RunState:
        if row is None:
            return cls("waiting")
        job_id, start_time, end_time, status, code = row
        state = "running" if end_time is None else "succeeded" if code == 1 else "failed"
        return cls(state, job_id, status, start_time, end_time)


def check_statement(
    schema: str, function: str, history: timedelta | None, columns: str = "*"
) -> tuple[sql.Composed, list[timedelta] | None]:
    """The call of a check function, with the window or without (its default window)."""
    history = history_interval(history)
    arguments = sql.SQL("()") if history is None else sql.SQL("(%s)")
    query = sql.SQL("SELECT {} FROM {}{}").format(
        sql.SQL(columns), sql.Identifier(schema, function), arguments
    )
    return query, None if history is None else [history]


def run_state_statement(
    schema: str, job_name: str, since: datetime
) -> tuple[sql.Composed, dict[str, object]]:
    """The latest run of ``job_name`` started at or after ``since``, with its alert code."""
    validation.name(job_name)
    if not isinstance(since, datetime) or since.tzinfo is None:
        raise InvalidArgumentError("since must be a timezone-aware datetime")
    query = sql.SQL(
        "SELECT j.job_id, j.start_time, j.end_time, j.status, t.alert_code FROM {job_log} j"
        " LEFT JOIN LATERAL (SELECT alert_code FROM {texts} WHERE alert_text = j.status"
        "  ORDER BY alert_code LIMIT 1) t ON true"
        " WHERE j.job_name = upper(%(name)s) AND j.start_time >= %(since)s"
        " ORDER BY j.start_time DESC, j.job_id DESC LIMIT 1"
    ).format(
        job_log=sql.Identifier(schema, "job_log"), texts=sql.Identifier(schema, "job_status_text")
    )
    return query, {"name": job_name, "since": since}


def history_error(exc: pg_errors.InvalidParameterValue, history: object) -> CheckHistoryError:
    hint = exc.diag.message_hint or ""
    return CheckHistoryError(f"{exc.diag.message_primary} ({history}). {hint}")


def fetch_check(
    conn: psycopg.Connection,
    schema: str,
    function: str,
    history: timedelta | None,
    columns: str,
    row_factory: Any,
) -> list[Any]:
    """Run a check function on ``conn``: shared by the plain check and the one that keeps
    the alert state (:mod:`jobmon_core.alert_memory`), which runs inside its transaction."""
    query, params = check_statement(schema, function, history, columns)
    try:
        with conn.cursor(row_factory=row_factory) as cur:
            return cur.execute(query, params).fetchall()
    except pg_errors.InvalidParameterValue as exc:
        raise history_error(exc, history) from None


def fetch_alerts(
    conn: psycopg.Connection, schema: str, history: timedelta | None = None
) -> list[Alert]:
    """``check_job_status`` of ``schema`` on ``conn``, as :class:`Alert` rows."""
    return fetch_check(conn, schema, "check_job_status", history, "*", class_row(Alert))


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
        history_interval(history)  # a bad window is refused before connecting
        return self._connection.run(
            lambda conn, _: fetch_check(conn, self._schema, function, history, columns, row_factory)
        )

    def run_state(self, job_name: str, since: datetime) -> RunState:
        query, params = run_state_statement(self._schema, job_name, since)
        return self._connection.run(
            lambda conn, _: RunState.from_row(conn.execute(query, params).fetchone())
        )

    def check_job_status(self, history: timedelta | None = None) -> list[Alert]:
        history_interval(history)  # a bad window is refused before connecting
        return self._connection.run(lambda conn, _: fetch_alerts(conn, self._schema, history))

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
            isinstance(escalate, bool)
            or not isinstance(escalate, int)
            or not 1 <= escalate <= validation.MAX_INT
        ):
            raise InvalidArgumentError(
                f"escalate must be None or an int of 1 or more (at most {validation.MAX_INT}), "
                f"not {escalate!r}"
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
                config = cur.execute(query, params).fetchone()
            assert config is not None  # an upsert with RETURNING: always one row
            return config

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
