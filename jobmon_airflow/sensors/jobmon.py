"""JobmonCheckSensor: wait for a healthy check, or for one job's successful run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException

from jobmon_core import Alert

from .._common import (
    alerts_table,
    as_datetime,
    as_history,
    check_fail_level,
    failing,
    problems_text,
    since_of,
)
from ..hooks.jobmon import JobmonHook
from ..triggers.jobmon import JobmonCheckTrigger


class JobmonCheckSensor(BaseSensorOperator):
    """Without ``job_name``: wait until ``check_job_status`` is OK; keep waiting while the worst
    alert is below ``fail_level``; fail at once (no retries) on an alert at or above it.

    With ``job_name`` (say, a job logged inside the database by pg_cron or pg_partman): wait
    for a run of that job that started at or after ``since`` (default: the start of the DAG
    run's data interval) and finished OK; keep waiting while it runs or has not started;
    fail at once when it failed.

    ``mode="reschedule"`` frees the worker between pokes; ``deferrable=True`` hands the
    waiting to :class:`JobmonCheckTrigger` in the triggerer.
    """

    template_fields: Sequence[str] = ("jobmon_conn_id", "history", "job_name", "since")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        jobmon_conn_id: str = JobmonHook.default_conn_name,
        job_name: str | None = None,
        since: datetime | str | None = None,
        history: timedelta | str | None = None,
        fail_level: int = 3,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobmon_conn_id = jobmon_conn_id
        self.job_name = job_name
        self.since = since
        self.history = history
        self.fail_level = check_fail_level(fail_level)
        self.deferrable = deferrable

    def _since(self, context: Any) -> datetime:
        return as_datetime(self.since) if self.since is not None else since_of(context)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        jobmon = JobmonHook(self.jobmon_conn_id).get_jobmon()
        if self.job_name is not None:
            state = jobmon.run_state(self.job_name, self._since(context))
            self.log.info("job %s since %s: %s", self.job_name, self._since(context), state.state)
            if state.state == "failed":
                raise AirflowFailException(
                    f"job {self.job_name!r} failed: run {state.job_id} ended with status "
                    f"{state.status!r}"
                )
            return PokeReturnValue(
                is_done=state.state == "succeeded",
                xcom_value={"job_id": state.job_id, "status": state.status},
            )
        alerts = jobmon.check_job_status(as_history(self.history))
        self.log.info("jobmon check:\n%s", alerts_table(alerts))
        self._raise_if_failing(alerts)
        return PokeReturnValue(
            is_done=all(a.is_ok for a in alerts), xcom_value=[a.to_dict() for a in alerts]
        )

    def _raise_if_failing(self, alerts: list[Alert]) -> None:
        bad = failing(alerts, self.fail_level)
        if bad:
            raise AirflowFailException(
                f"jobmon check found {len(bad)} problem(s) at level >= {self.fail_level}: "
                + problems_text(bad)
            )

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)  # answer at once when it is already known
        if done.is_done:  # type: ignore[union-attr]
            return done.xcom_value  # type: ignore[union-attr]
        since = self._since(context).isoformat() if self.job_name is not None else None
        history = as_history(self.history)
        self.defer(
            trigger=JobmonCheckTrigger(
                jobmon_conn_id=self.jobmon_conn_id,
                poke_interval=float(self.poke_interval),
                fail_level=self.fail_level,
                history=None if history is None else f"{history.total_seconds()}s",
                job_name=self.job_name,
                since=since,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("status") == "success":
            self.log.info("jobmon trigger: %s", event)
            return event.get("alerts") or {"job_id": event.get("job_id")}
        if "alerts" in event:
            self._raise_if_failing([Alert(**a) for a in event["alerts"]])
        raise AirflowFailException(
            f"job {event.get('job_name')!r} failed: run {event.get('job_id')} ended with status "
            f"{event.get('run_status')!r}"
        )
