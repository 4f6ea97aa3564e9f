"""JobmonCheckOperator (fail the monitoring DAG on CRITICAL) and JobmonSqlOperator (SQL as a
logged job)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar, NoReturn

import psycopg
from airflow.sdk import BaseOperator

from jobmon_core import Job, Jobmon, JobmonError
from jobmon_core.caller import error_text
from jobmon_core.check_tasks import (
    alerts_table,
    as_history,
    check_fail_level,
    failing,
    problems_text,
)

from .._compat import AirflowException, AirflowFailException
from ..hooks.jobmon import JobmonHook

COMMIT_STEP = "COMMIT"
"""The action of the step that records a failed commit (say, a deferred constraint)."""


class JobmonCheckOperator(BaseOperator):
    """Run ``check_job_status`` and fail the task (so the monitoring DAG run) on problems.

    The alerts are logged as a table. Any alert with a code >= ``fail_level`` fails the task
    at once, without retries, with the problems in the message; lower codes only log a
    warning.

    :param jobmon_conn_id: the Airflow connection of the jobmon database (type ``jobmon`` or
        ``postgres``). (templated)
    :param history: how far back the check looks: a timedelta, a string such as
        ``"3 days"`` or ``"72h"``, a number of seconds, or None for the longest configured
        window. (templated)
    :param fail_level: the lowest alert code that fails the task: 3 (default, CRITICAL;
        custom codes above 3 count), or 2 to fail on warnings too.
    :return: pushed to XCom: the alerts, a list of dicts with the keys ``alert_code``,
        ``alert_status``, ``job_name`` and ``alert_text``.
    """

    template_fields: Sequence[str] = ("jobmon_conn_id", "history")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        jobmon_conn_id: str = JobmonHook.default_conn_name,
        history: timedelta | str | None = None,
        fail_level: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobmon_conn_id = jobmon_conn_id
        self.history = history
        self.fail_level = check_fail_level(fail_level)

    def execute(self, context: Any) -> list[dict[str, Any]]:
        with JobmonHook(self.jobmon_conn_id) as hook:
            alerts = hook.jobmon.check_job_status(as_history(self.history), shared_state=True)
        self.log.info("jobmon check:\n%s", alerts_table(alerts))
        bad = failing(alerts, self.fail_level)
        if bad:
            raise AirflowFailException(
                f"jobmon check found {len(bad)} problem(s) at level >= {self.fail_level}: "
                + problems_text(bad)
            )
        warnings = [a for a in alerts if not a.is_ok]
        if warnings:
            self.log.warning("jobmon check: %s", problems_text(warnings))
        return [a.to_dict() for a in alerts]


class JobmonSqlOperator(BaseOperator):
    """Run SQL as one logged jobmon job, each statement a step (``Rows affected: N``), all in
    one transaction.

    Every run ends its job. On a failing statement the step is ``CRITICAL`` with the
    database's message; on a failing commit (say, a deferred constraint) a ``COMMIT`` step
    is; either way the transaction rolls back, the job is failed ``CRITICAL``, the log stays,
    and the task fails with :class:`AirflowException`. Any other error (a dropped
    connection...) also fails the job, with a step holding the error, and propagates as is.

    :param sql: a statement, a list of statements, or the name of a ``.sql`` template file
        (split into statements). (templated)
    :param job_name: the jobmon job's name; default ``<dag_id>.<task_id>`` (upper-cased by
        the database). (templated)
    :param jobmon_conn_id: the Airflow connection of the jobmon database.
    :param conn_id: the connection the SQL runs on (type ``jobmon`` or ``postgres``);
        default: ``jobmon_conn_id``'s.
    :param parameters: the statements' query parameters (psycopg style: ``%(name)s`` with a
        dict, ``%s`` with a list), the same for every statement. (templated)
    :return: pushed to XCom: ``"Job logged with job id: <id>"``, as pg_jobmon's ``sql_job``.
    """

    template_fields: Sequence[str] = ("sql", "job_name", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "parameters": "json"}
    ui_color = "#dbe9f6"

    def __init__(
        self,
        *,
        sql: str | list[str],
        job_name: str | None = None,
        jobmon_conn_id: str = JobmonHook.default_conn_name,
        conn_id: str | None = None,
        parameters: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.job_name = job_name
        self.jobmon_conn_id = jobmon_conn_id
        self.conn_id = conn_id
        self.parameters = parameters

    def statements(self) -> list[str]:
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        if isinstance(self.sql, str):
            found = DbApiHook.split_sql_string(self.sql, strip_semicolon=False)
        else:
            found = [s for s in self.sql if s and s.strip()]
        if not found:
            raise AirflowFailException("JobmonSqlOperator: sql holds no statement")
        return [s.strip() for s in found]

    def execute(self, context: Any) -> str:
        statements = self.statements()
        job_name = self.job_name or f"{self.dag_id}.{self.task_id}"
        work_hook = JobmonHook(self.conn_id or self.jobmon_conn_id)
        committed = False
        job: Job | None = None
        # The job's context manager fails it (CRITICAL, with a step naming the error) on any
        # exception that escapes _run, so no path leaves it open.
        try:
            with (
                JobmonHook(self.jobmon_conn_id) as hook,
                work_hook.get_conn() as work,
                hook.jobmon.job(job_name, conn=work) as job,
            ):
                try:
                    self._run(hook.jobmon, job, statements, work)
                except BaseException:
                    _cancel_running_statement(work)
                    raise
                committed = True
        except JobmonError as exc:
            if not committed:
                raise
            # The work is committed: failing the task now would make a retry run it again.
            self.log.warning(
                "pg-jobmon: the %d statement(s) were committed, but their job could not be "
                "closed: %s",
                len(statements),
                exc,
            )
        job_id = job.job_id if job is not None else None
        self.log.info("jobmon job %s: %d statement(s) committed", job_id, len(statements))
        return f"Job logged with job id: {job_id}"

    def _run(
        self, jobmon: Jobmon, job: Job, statements: list[str], work: psycopg.Connection[Any]
    ) -> None:
        job_id = job.job_id
        assert job_id is not None  # the job was entered
        for number, statement in enumerate(statements, 1):
            if not jobmon.sql_step(job_id, statement, statement, self.parameters, conn=work):
                self._fail(job, job_id, work, f"statement {number} of {len(statements)} failed")
        try:
            work.commit()
        except psycopg.Error as exc:
            step_id = jobmon.add_step(job_id, COMMIT_STEP)
            jobmon.update_step(step_id, "CRITICAL", error_text(exc))
            self._fail(job, job_id, work, "the commit failed", exc)

    @staticmethod
    def _fail(
        job: Job,
        job_id: int,
        work: psycopg.Connection[Any],
        what: str,
        cause: Exception | None = None,
    ) -> NoReturn:
        """Fail the job and the task, the last step's message (the database's) saying why."""
        with contextlib.suppress(JobmonError):  # the job's __exit__ tries again, quietly
            job.fail()
        # A dead connection cannot roll back, but then the server already did: the
        # statement's error, not the connection's, is what the task must report.
        with contextlib.suppress(psycopg.Error):
            work.rollback()
        message = None
        with contextlib.suppress(JobmonError):  # the statement's error must reach the task
            message = job.jobmon.show_detail(job_id)[-1].message
        raise AirflowException(
            f"{what} ({message}); the transaction was rolled back; see jobmon job {job_id}"
        ) from cause


def _cancel_running_statement(work: psycopg.Connection[Any]) -> None:
    """A statement cut short in the client (the task's ``execution_timeout``) still runs in
    the server, holding its locks, until it ends: cancel it. Closing the connection would
    not stop it."""
    if work.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
        with contextlib.suppress(psycopg.Error):
            work.cancel_safe(timeout=2)


__all__ = ["JobmonCheckOperator", "JobmonSqlOperator"]
