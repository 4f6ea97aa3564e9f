"""JobmonCheckOperator (fail the monitoring DAG on CRITICAL) and JobmonSqlOperator (SQL as a
logged job)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from .._common import alerts_table, as_history, check_fail_level, failing, problems_text
from ..hooks.jobmon import JobmonHook


class JobmonCheckOperator(BaseOperator):
    """Run ``check_job_status`` and fail the task (so the monitoring DAG run) on problems.

    The alerts are logged as a table and pushed to XCom as a list of dicts. Any alert with a
    code >= ``fail_level`` (default 3, CRITICAL; custom codes above 3 count) fails the task at
    once, without retries, with the problems in the message. Lower codes only log a warning.
    ``history`` (templated) is a timedelta or a string such as ``"3 days"``.
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
        jobmon = JobmonHook(self.jobmon_conn_id).get_jobmon()
        alerts = jobmon.check_job_status(as_history(self.history))
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
    one transaction on ``conn_id`` (default: the jobmon connection's database).

    ``sql`` is a statement, a list of statements, or a ``.sql`` template file (split into
    statements). On an error the failing step is ``CRITICAL`` with the database's message,
    the transaction rolls back, the job is failed, the log stays, and the task fails.
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
        jobmon = JobmonHook(self.jobmon_conn_id).get_jobmon()
        work_hook = JobmonHook(self.conn_id or self.jobmon_conn_id)
        with work_hook.get_conn() as work:
            job_id = jobmon.add_job(job_name, conn=work)
            for number, statement in enumerate(statements, 1):
                if not jobmon.sql_step(job_id, statement, statement, self.parameters, conn=work):
                    work.rollback()
                    message = jobmon.show_detail(job_id)[-1].message
                    jobmon.fail_job(job_id)
                    raise AirflowException(
                        f"statement {number} of {len(statements)} failed ({message}); "
                        f"the transaction was rolled back; see jobmon job {job_id}"
                    )
            work.commit()
        jobmon.close_job(job_id)
        self.log.info("jobmon job %s: %d statement(s) committed", job_id, len(statements))
        return f"Job logged with job id: {job_id}"


__all__ = ["JobmonCheckOperator", "JobmonSqlOperator"]
