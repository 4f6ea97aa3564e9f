"""The checker: run the schema's ``check_job_status`` and manage ``job_check_config``.

The rules live in SQL (migrations 0003 and 0006; "runs too long" in 0010) so that SQL-only
users (check_postgres custom queries, Grafana, pg_jobmon 1.4 scripts) get exactly what Python
gets. This module only calls them, turns rows into :class:`Alert` objects and validates
configuration before writing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
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
DEFAULT_DURATION_PERCENTILE = 0.5
"""The percentile of recent durations that ``duration_factor`` multiplies: the median."""
DEFAULT_DURATION_RUNS = 20
"""How many previous runs "slower than usual" looks at."""
MIN_USUAL_RUNS = 5
"""Successful runs among them needed before "slower than usual" judges (in migration 0010)."""
MAX_DURATION_RUNS = 100
"""Each run looked at is a heap fetch per check: 100 keep a check of 100 such jobs near 2 ms."""
MAX_DURATION_FACTOR = 1000.0


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
    # pg-jobmon's own columns (migration 0010): "runs too long", all off by default
    warn_duration: timedelta | None = None
    error_duration: timedelta | None = None
    duration_factor: float | None = None
    duration_percentile: float = DEFAULT_DURATION_PERCENTILE
    duration_runs: int = DEFAULT_DURATION_RUNS


CONFIG_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(CheckConfig))
"""Named, not ``*``: a later migration may add columns the dataclass does not know."""


@dataclass(frozen=True)
class DurationLimits:
    """A job's "runs too long" settings, checked (see :func:`duration_limits`)."""

    warn_duration: timedelta | None = None
    error_duration: timedelta | None = None
    duration_factor: float | None = None
    duration_percentile: float = DEFAULT_DURATION_PERCENTILE
    duration_runs: int = DEFAULT_DURATION_RUNS


def duration_limits(
    warn_duration: object = None,
    error_duration: object = None,
    duration_factor: object = None,
    duration_percentile: object = None,
    duration_runs: object = None,
) -> DurationLimits:
    """Check the "runs too long" arguments of ``configure_check``, before connecting.

    Each is optional; None leaves that limit off (percentile and runs: their defaults). A
    percentile or a number of runs without ``duration_factor`` is refused: "slower than
    usual" is off without a factor, so they would be silently ignored."""
    warn = None if warn_duration is None else _positive_duration(warn_duration, "warn_duration")
    error = None if error_duration is None else _positive_duration(error_duration, "error_duration")
    if warn is not None and error is not None and error < warn:
        raise InvalidArgumentError(
            f"error_duration ({error}) must not be shorter than warn_duration ({warn})"
        )
    factor = None
    if duration_factor is not None:
        factor = _number(duration_factor, "duration_factor")
        if not 1 <= factor <= MAX_DURATION_FACTOR:
            raise InvalidArgumentError(
                f"duration_factor must be 1..{MAX_DURATION_FACTOR:g} (a run slower than this"
                f" many times its usual duration alerts), not {duration_factor!r}"
            )
    elif duration_percentile is not None or duration_runs is not None:
        raise InvalidArgumentError(
            "duration_percentile and duration_runs need duration_factor: without it "
            "'slower than usual' is off (e.g. duration_factor=2 for twice the usual)"
        )
    percentile = DEFAULT_DURATION_PERCENTILE
    if duration_percentile is not None:
        percentile = _number(duration_percentile, "duration_percentile")
        if not 0 < percentile <= 1:
            raise InvalidArgumentError(
                "duration_percentile must be a fraction above 0 and at most 1 (0.5 = median,"
                f" 0.9 = 90th percentile), not {duration_percentile!r}"
            )
    runs = DEFAULT_DURATION_RUNS
    if duration_runs is not None:
        if isinstance(duration_runs, bool) or not isinstance(duration_runs, int):
            raise InvalidArgumentError(
                f"duration_runs must be an int, not {type(duration_runs).__name__}"
            )
        if not MIN_USUAL_RUNS <= duration_runs <= MAX_DURATION_RUNS:
            raise InvalidArgumentError(
                f"duration_runs must be {MIN_USUAL_RUNS}..{MAX_DURATION_RUNS}, not {duration_runs}"
            )
        runs = duration_runs
    return DurationLimits(warn, error, factor, percentile, runs)


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
        warn_duration: timedelta | None = None,
        error_duration: timedelta | None = None,
        duration_factor: float | None = None,
        duration_percentile: float | None = None,
        duration_runs: int | None = None,
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
        limits = duration_limits(
            warn_duration, error_duration, duration_factor, duration_percentile, duration_runs
        )
        usual = limits.duration_factor is not None  # percentile and runs only with a factor
        params: dict[str, object] = {
            "p_job_name": job_name,
            "p_warn_threshold": warn,
            "p_error_threshold": error,
            "p_sensitivity": sensitivity,
            "p_escalate": escalate,
            "p_active": active,
            "p_warn_duration": limits.warn_duration,
            "p_error_duration": limits.error_duration,
            "p_duration_factor": limits.duration_factor,
            "p_duration_percentile": limits.duration_percentile if usual else None,
            "p_duration_runs": limits.duration_runs if usual else None,
        }
        # the schema's configure_check() (version 11), which SQL users call too: one upsert
        query = sql.SQL("SELECT {returning} FROM {function}({arguments}) AS c").format(
            returning=sql.SQL(", ").join(sql.Identifier("c", f.name) for f in fields(CheckConfig)),
            function=self._fn("configure_check"),
            arguments=sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
                for name in params
            ),
        )

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
        query = sql.SQL("SELECT {} FROM {} ORDER BY job_name").format(
            CONFIG_COLUMNS, self._fn("job_check_config")
        )

        def read(conn: psycopg.Connection, _: bool) -> list[CheckConfig]:
            with conn.cursor(row_factory=class_row(CheckConfig)) as cur:
                return cur.execute(query).fetchall()

        return self._connection.run(read)


def _threshold(value: object, what: str) -> timedelta:
    if value is None:
        raise InvalidArgumentError(f"{what} threshold is required (a datetime.timedelta)")
    return _positive_duration(value, f"{what} threshold")


def _positive_duration(value: object, what: str) -> timedelta:
    """A ``timedelta`` longer than zero and at most 1000 years."""
    duration = validation.duration(value, what)
    if duration <= timedelta(0):
        raise InvalidArgumentError(f"{what} must be longer than zero, got {duration}")
    return duration


def _number(value: object, what: str) -> float:
    """A finite real number (an int or a float, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{what} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise InvalidArgumentError(f"{what} is too large a number") from None
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{what} must be a finite number, not {value!r}")
    return number
