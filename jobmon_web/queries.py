"""The page's queries: each one an index look-up or a bounded scan, never "all rows".

Every list is a page (``LIMIT``, keyset on ``job_id``), every per-job figure comes from
the ``(job_name, ...)`` indexes of migration 0003, and the distinct job names come from a
loose index scan (one probe per name), so the cost follows what is shown, not the size of
``job_log`` (``bench/web_pages.py`` measures it at 10^6 rows). All SQL is composed with
:mod:`psycopg.sql`; values are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from jobmon_core.reports import JobRecord, StepRecord

RUNNING = "RUNNING"  # the status filter's word for open runs (status NULL, no end time)
MAX_PAGE = 200
STEPS_PAGE = 500
SPARK_RUNS = 20


@dataclass(frozen=True)
class RunFilter:
    """The jobs view's filters: exact job name (case-insensitive, as ``show_job``), status
    text (or ``RUNNING``), start time window, and the keyset cursor."""

    name: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: int | None = None  # job_id cursor: runs older than this one
    limit: int = 50


@dataclass(frozen=True)
class SparkRun:
    """One bar of a job's small chart: a recent run's duration and outcome."""

    job_name: str
    job_id: int
    start_time: datetime
    end_time: datetime | None
    status: str | None


@dataclass(frozen=True)
class JobSummary:
    """Per job name, what the metrics report: the newest OK end, the newest finished run."""

    job_name: str
    last_success: datetime | None
    last_start: datetime | None
    last_end: datetime | None
    last_status: str | None
    last_job_id: int | None


_NAMES = sql.SQL(
    "WITH RECURSIVE names(job_name) AS ("
    " (SELECT job_name FROM {job_log} ORDER BY job_name LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT j.job_name FROM {job_log} j WHERE j.job_name > n.job_name"
    "  ORDER BY j.job_name LIMIT 1) FROM names n WHERE n.job_name IS NOT NULL)"
)
"""The distinct job names, by a loose index scan: one probe of job_log_job_name_idx per
name instead of reading every row (PostgreSQL has no skip scan for DISTINCT)."""


def _t(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def _names(schema: str) -> sql.Composed:
    return _NAMES.format(job_log=_t(schema, "job_log"))


def runs(conn: psycopg.Connection, schema: str, f: RunFilter) -> list[JobRecord]:
    """One page of runs, newest start first, every filter in SQL before the LIMIT.

    Ordered by start time (ties by job_id), not by job_id alone: the name, window and
    open-run filters then walk the ``(job_name, start_time)``, ``start_time`` and open-run
    indexes in order and stop at the page's end, whatever order the ids were taken in. The
    cursor is the last run shown (``before``): the next page starts after its start time,
    or, when that run has been purged since, at the ids below it (ids grow with time)."""
    where: list[sql.Composable] = []
    params: dict[str, object] = {"limit": f.limit}
    if f.name:
        where.append(sql.SQL("job_name = upper(%(name)s)"))
        params["name"] = f.name
    if f.status == RUNNING:
        where.append(sql.SQL("end_time IS NULL AND status IS NULL"))
    elif f.status:
        where.append(sql.SQL("status = %(status)s"))
        params["status"] = f.status
    if f.since is not None:
        where.append(sql.SQL("start_time >= %(since)s"))
        params["since"] = f.since
    if f.until is not None:
        where.append(sql.SQL("start_time < %(until)s"))
        params["until"] = f.until
    if f.before is not None:
        params["before"] = f.before
        cursor_start = _start_time(conn, schema, f.before)
        if cursor_start is None:  # the cursor's run was purged: older ids are older runs
            where.append(sql.SQL("job_id < %(before)s"))
        else:
            where.append(sql.SQL("(start_time, job_id) < (%(cursor_start)s, %(before)s)"))
            params["cursor_start"] = cursor_start
    condition = sql.SQL(" AND ").join(where) if where else sql.SQL("true")
    query = sql.SQL(
        "SELECT * FROM {} WHERE {} ORDER BY start_time DESC, job_id DESC LIMIT %(limit)s"
    ).format(_t(schema, "job_log"), condition)
    with conn.cursor(row_factory=class_row(JobRecord)) as cur:
        return cur.execute(query, params).fetchall()


def _start_time(conn: psycopg.Connection, schema: str, job_id: int) -> datetime | None:
    query = sql.SQL("SELECT start_time FROM {} WHERE job_id = %s").format(_t(schema, "job_log"))
    row = conn.execute(query, [job_id]).fetchone()
    return None if row is None else row[0]


def spark_runs(
    conn: psycopg.Connection, schema: str, names: list[str], per_name: int = SPARK_RUNS
) -> dict[str, list[SparkRun]]:
    """The newest ``per_name`` runs of each job name, oldest first (one walk of the
    ``(job_name, start_time)`` index each)."""
    if not names:
        return {}
    query = sql.SQL(
        "SELECT n.job_name, r.job_id, r.start_time, r.end_time, r.status"
        " FROM unnest(%(names)s::text[]) AS n(job_name)"
        " CROSS JOIN LATERAL (SELECT job_id, start_time, end_time, status FROM {job_log} j"
        "  WHERE j.job_name = n.job_name ORDER BY j.start_time DESC LIMIT %(per)s) AS r"
        " ORDER BY n.job_name, r.start_time, r.job_id"
    ).format(job_log=_t(schema, "job_log"))
    found: dict[str, list[SparkRun]] = {name: [] for name in names}
    with conn.cursor(row_factory=class_row(SparkRun)) as cur:
        for run in cur.execute(query, {"names": names, "per": per_name}):
            found[run.job_name].append(run)
    return found


def run(conn: psycopg.Connection, schema: str, job_id: int) -> JobRecord | None:
    query = sql.SQL("SELECT * FROM {} WHERE job_id = %s").format(_t(schema, "job_log"))
    with conn.cursor(row_factory=class_row(JobRecord)) as cur:
        return cur.execute(query, [job_id]).fetchone()


def steps(
    conn: psycopg.Connection, schema: str, job_id: int, after: int | None = None
) -> list[StepRecord]:
    """A page of a run's steps in order (a run may have thousands)."""
    query = sql.SQL(
        "SELECT * FROM {} WHERE job_id = %(job)s AND step_id > %(after)s"
        " ORDER BY step_id LIMIT %(limit)s"
    ).format(_t(schema, "job_detail"))
    params = {"job": job_id, "after": after or 0, "limit": STEPS_PAGE}
    with conn.cursor(row_factory=class_row(StepRecord)) as cur:
        return cur.execute(query, params).fetchall()


def _like_prefix(text: str) -> str:
    """``text`` as a LIKE pattern matching itself literally, followed by anything."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def airflow_runs(
    conn: psycopg.Connection, schema: str, dag_id: str, run_id: str, limit: int = 20
) -> list[JobRecord]:
    """The jobs of one Airflow DAG run (one per attempt; newest first), by run key.

    A run's key is ``airflow:<dag_id>/<run_id>@<attempt>`` (``jobmon_airflow.runlog``). Its
    job is named after the DAG unless ``job_name=`` renamed it: that name's runs are looked
    up first, walking its ``(job_name, job_id)`` index from the newest; only when none
    matches is every keyed run searched."""
    key = f"airflow:{dag_id}/{run_id}"
    params: dict[str, object] = {
        "key": key,
        "pattern": _like_prefix(key + "@"),
        "name": dag_id,
        "limit": limit,
    }
    match = sql.SQL("(run_key = %(key)s OR run_key LIKE %(pattern)s)")
    by_name = sql.SQL(
        "SELECT * FROM {} WHERE job_name = upper(%(name)s) AND {} ORDER BY job_id DESC"
        " LIMIT %(limit)s"
    ).format(_t(schema, "job_log"), match)
    anywhere = sql.SQL(
        "SELECT * FROM {} WHERE run_key IS NOT NULL AND {} ORDER BY job_id DESC LIMIT %(limit)s"
    ).format(_t(schema, "job_log"), match)
    with conn.cursor(row_factory=class_row(JobRecord)) as cur:
        found = cur.execute(by_name, params).fetchall()
        return found or cur.execute(anywhere, params).fetchall()


def job_summaries(conn: psycopg.Connection, schema: str, ok_text: str) -> list[JobSummary]:
    """Per distinct job name: the end of its newest OK run and its newest finished run.

    The names come from a loose index scan of ``job_log_job_name_idx`` (one probe per name,
    not a scan of the log); each figure is a backward walk of the ``(job_name, end_time)``
    index, one per name unless its newest run failed."""
    query = sql.SQL(
        "{names} SELECT n.job_name,"
        # the newest finished run is usually OK: then it is the newest success too, and only
        # a job whose last run failed pays a second walk of the index
        "  CASE WHEN fin.status = %(ok)s THEN fin.end_time ELSE"
        "  (SELECT j.end_time FROM {job_log} j WHERE j.job_name = n.job_name"
        "   AND j.end_time IS NOT NULL AND j.status = %(ok)s ORDER BY j.end_time DESC LIMIT 1)"
        "  END AS last_success,"
        "  fin.start_time AS last_start, fin.end_time AS last_end, fin.status AS last_status,"
        "  fin.job_id AS last_job_id"
        " FROM names n"
        " LEFT JOIN LATERAL (SELECT job_id, start_time, end_time, status FROM {job_log} j"
        "  WHERE j.job_name = n.job_name AND j.end_time IS NOT NULL"
        "  ORDER BY j.end_time DESC LIMIT 1) AS fin ON true"
        " WHERE n.job_name IS NOT NULL ORDER BY n.job_name"
    ).format(names=_names(schema), job_log=_t(schema, "job_log"))
    with conn.cursor(row_factory=class_row(JobSummary)) as cur:
        return cur.execute(query, {"ok": ok_text}).fetchall()


def ok_text(conn: psycopg.Connection, schema: str) -> str:
    """The status text of alert code 1 (``OK`` unless a DBA changed job_status_text)."""
    query = sql.SQL(
        "SELECT alert_text FROM {} WHERE alert_code = 1 ORDER BY alert_text LIMIT 1"
    ).format(_t(schema, "job_status_text"))
    row = conn.execute(query).fetchone()
    return "OK" if row is None else str(row[0])


def open_runs(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """Runs open now (no end time), per job name, from the partial index of open runs."""
    query = sql.SQL(
        "SELECT job_name, count(*) FROM {} WHERE end_time IS NULL GROUP BY job_name"
    ).format(_t(schema, "job_log"))
    return {str(name): int(count) for name, count in conn.execute(query)}


def window_counts(
    conn: psycopg.Connection, schema: str, window: timedelta
) -> list[tuple[str, str, int]]:
    """(job_name, status, runs) of the runs started within ``window`` (status ``RUNNING``
    for open ones), from the start_time index."""
    query = sql.SQL(
        "SELECT job_name, coalesce(status, %(running)s), count(*) FROM {}"
        " WHERE start_time >= now() - %(window)s GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(_t(schema, "job_log"))
    rows: list[Any] = conn.execute(query, {"running": RUNNING, "window": window}).fetchall()
    return [(str(name), str(status), int(count)) for name, status, count in rows]


def last_steps(
    conn: psycopg.Connection, schema: str, job_ids: list[int], per_run: int = 50
) -> list[tuple[int, str, float]]:
    """(job_id, action, seconds) of the finished steps of the given runs, at most
    ``per_run`` each: the step durations of each job's newest finished run."""
    if not job_ids:
        return []
    query = sql.SQL(
        "SELECT r.job_id, s.action, s.elapsed_time FROM unnest(%(ids)s::bigint[]) AS r(job_id)"
        " CROSS JOIN LATERAL (SELECT action, elapsed_time FROM {job_detail} d"
        "  WHERE d.job_id = r.job_id AND d.elapsed_time IS NOT NULL ORDER BY d.step_id"
        "  LIMIT %(per)s) AS s"
    ).format(job_detail=_t(schema, "job_detail"))
    rows: list[Any] = conn.execute(query, {"ids": job_ids, "per": per_run}).fetchall()
    return [(int(job_id), str(action), float(seconds)) for job_id, action, seconds in rows]


def job_names(conn: psycopg.Connection, schema: str, limit: int = 500) -> list[str]:
    """Distinct job names (loose index scan), for the name filter's suggestions."""
    query = sql.SQL(
        "{names} SELECT job_name FROM names WHERE job_name IS NOT NULL LIMIT %(limit)s"
    ).format(names=_names(schema))
    return [str(row[0]) for row in conn.execute(query, {"limit": limit})]
