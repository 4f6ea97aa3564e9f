"""Reports over the log (upstream's show_* functions) and retention (job_log_clear).

Every report is one indexed query returning typed rows, newest first as upstream. The purge
deletes in batches, each its own short transaction, so a large purge never holds locks long
and never blocks the writers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import class_row

from . import validation
from .caller import error_text
from .connection import LoggingConnection
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .jobmon import Jobmon

logger = logging.getLogger("jobmon_core")
R = TypeVar("R")

DEFAULT_BATCH = 10_000


@dataclass(frozen=True)
class JobRecord:
    """One ``job_log`` row: a run of a job."""

    job_id: int
    owner: str
    job_name: str
    start_time: datetime
    end_time: datetime | None
    status: str | None
    pid: int
    run_key: str | None = None

    @property
    def duration(self) -> timedelta | None:
        return None if self.end_time is None else self.end_time - self.start_time


@dataclass(frozen=True)
class StepRecord:
    """One ``job_detail`` row: a step of a run."""

    job_id: int
    step_id: int
    action: str
    start_time: datetime
    end_time: datetime | None
    elapsed_time: float | None
    status: str | None
    message: str | None
    step_key: str | None = None


def limit_arg(value: object, what: str = "limit") -> int:
    """A positive int that fits the bigint of ``LIMIT``, passed to the SQL reports, whose
    limit is pg_jobmon's ``integer``: a limit past its range asks for every row, and so
    does the largest integer."""
    return min(validation.count(value, what), validation.MAX_INT)


class Reports:
    """The show_* reports of one schema."""

    def __init__(self, connection: LoggingConnection, schema: str) -> None:
        self._connection = connection
        self._schema = schema

    def _t(self, name: str) -> sql.Identifier:
        return sql.Identifier(self._schema, name)

    def _call(
        self, function: str, args: list[object], row_type: type[R], *, regex: bool = False
    ) -> list[R]:
        """The rows of the schema's SQL report function ``function``: pg_jobmon's show_*
        (migration 9), which SQL callers use too, so both doors give the same rows."""
        query = sql.SQL("SELECT * FROM {}({})").format(
            self._t(function), sql.SQL(", ").join(sql.Placeholder() * len(args))
        )

        def read(conn: psycopg.Connection, _: bool) -> list[R]:
            with conn.cursor(row_factory=class_row(row_type)) as cur:
                try:
                    return cur.execute(query, args).fetchall()
                except pg_errors.InvalidRegularExpression as exc:
                    if not regex:
                        raise
                    raise InvalidArgumentError(
                        f"pattern is not a valid POSIX regular expression: "
                        f"{exc.diag.message_primary}"
                    ) from None

        return self._connection.run(read)

    def show_job(self, name: str, limit: int = 10) -> list[JobRecord]:
        validation.name(name)
        return self._call("show_job", [name, limit_arg(limit)], JobRecord)

    def show_job_like(
        self, pattern: str, limit: int = 10, *, status: str | None = None
    ) -> list[JobRecord]:
        validation.text(pattern, "pattern", allow_empty=False)
        args: list[object] = [pattern, limit_arg(limit)]
        if status is not None:  # in SQL, before the LIMIT: never filter a page afterwards
            args.append(validation.text(status, "status", allow_empty=False))
        return self._call("show_job_like", args, JobRecord, regex=True)

    def show_job_status(
        self, status: str, limit: int = 10, *, name: str | None = None
    ) -> list[JobRecord]:
        validation.text(status, "status", allow_empty=False)
        limit = limit_arg(limit)
        if name is None:
            return self._call("show_job_status", [status, limit], JobRecord)
        validation.name(name)
        return self._call("show_job_status", [name, status, limit], JobRecord)

    def show_detail(self, job: int | str, jobs: int = 1) -> list[StepRecord]:
        """The steps of job ``job`` (an id), or of the newest ``jobs`` runs of the job named
        ``job``: runs newest first, steps of each run in order."""
        if isinstance(job, str):
            validation.name(job)
            return self._call("show_detail", [job, limit_arg(jobs, "jobs")], StepRecord)
        validation.ident(job, "job_id")
        return self._call("show_detail", [job], StepRecord)

    def show_running(self, limit: int = 10) -> list[JobRecord]:
        """Open runs whose session is still connected. A session that started after the run
        did not start it (its pid was reused), so it is not reported."""
        return self._call("show_running", [limit_arg(limit)], JobRecord)

    def job_log_clear(self, jobmon: Jobmon, older_than: timedelta, batch_size: int) -> int:
        """Delete runs that started more than ``older_than`` ago (their steps go with them),
        logged as a job of its own, as upstream; return the number of runs deleted.

        The job and its step are :meth:`Jobmon.job` and ``job.step``: an error fails the
        step (``ERROR: <message>``, upstream's text) and the job, or, if the step could not
        even be added, logs upstream's ``EXCEPTION before first step logged`` step."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidArgumentError("older_than must be a datetime.timedelta of zero or more")
        validation.duration(older_than, "older_than")  # now() - older_than must be a timestamp
        batch_size = limit_arg(batch_size, "batch_size")
        boundary, boundary_text = self._connection.run(
            lambda conn, _: _one(
                conn.execute("SELECT now() - %s, (now() - %s)::text", [older_than, older_than])
            )
        )
        title = f"Purging pg_jobmon job logs older than {boundary_text}"
        purge = jobmon.job(title)
        purge.failure_text = error_text  # upstream's "ERROR: <message>"
        with purge, purge.step(title) as step:
            assert purge.job_id is not None  # entered
            deleted = self._delete_before(boundary, purge.job_id, batch_size)
            if deleted:
                step.message = (
                    f"Deleted {deleted} rows from job_log and associated rows in job_detail"
                )
            else:
                step.message = f"No jobs logged older than {boundary_text}"
            logger.info(step.message)
        return deleted

    def _delete_before(self, boundary: datetime, own_job_id: int, batch_size: int) -> int:
        """Delete, in batches (each its own short transaction), the runs started at or before
        ``boundary``, except the purge's own; return how many. The delete is the schema's
        ``_delete_runs_before``, which the SQL ``job_log_clear`` runs too."""
        delete = sql.SQL("SELECT {}(%(boundary)s, %(own)s, %(batch)s)").format(
            self._t("_delete_runs_before")
        )
        params = {"boundary": boundary, "own": own_job_id, "batch": batch_size}
        deleted = 0
        while True:
            batch = self._connection.run(lambda conn, _: int(_one(conn.execute(delete, params))[0]))
            deleted += batch
            if batch < batch_size:
                return deleted


def _one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The one row a statement that always returns one returned."""
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)
