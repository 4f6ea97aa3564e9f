"""JobmonCheckSensor (wait for a healthy check) and JobmonJobRunSensor (wait for one job's
successful run).

Both poke (``mode="poke"``, one logging session for all the pokes of a try, closed when the
try ends), reschedule (``mode="reschedule"``, a session per poke, closed before the worker
slot is given back) or defer (``deferrable=True``: :class:`JobmonCheckTrigger` waits in the
triggerer). Each pushes one XCom shape, whichever way it waited.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from jobmon_core import Alert, Jobmon
from jobmon_core.check_tasks import (
    alerts_table,
    as_datetime,
    as_history,
    check_fail_level,
    failing,
    problems_text,
)

from .._common import since_of
from .._compat import AirflowFailException, AirflowProviderDeprecationWarning
from ..hooks.jobmon import JobmonHook
from ..triggers.jobmon import JobmonCheckTrigger


class _JobmonSensor(BaseSensorOperator):
    """What the two sensors share: the hook's life and the deferral to the trigger.

    A subclass says what one poke is (:meth:`_poke`), how the trigger waits for the same
    outcome (:meth:`_trigger`) and what the trigger's event means (:meth:`_finish`).
    """

    _hook: JobmonHook | None = None

    def __init__(
        self,
        *,
        jobmon_conn_id: str = JobmonHook.default_conn_name,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jobmon_conn_id = jobmon_conn_id
        self.deferrable = deferrable

    def _poke(self, jobmon: Jobmon, context: Any) -> PokeReturnValue:
        raise NotImplementedError

    def _trigger(self, context: Any) -> JobmonCheckTrigger:
        raise NotImplementedError

    def _finish(self, event: dict[str, Any]) -> Any:
        raise NotImplementedError

    def poke(self, context: Any) -> PokeReturnValue:
        if self._hook is None:  # one session for all the pokes of this try
            self._hook = JobmonHook(self.jobmon_conn_id)
        return self._poke(self._hook.jobmon, context)

    def execute(self, context: Any) -> Any:
        try:
            if not self.deferrable:
                return super().execute(context)
            done = self.poke(context)  # answer at once when it is already known
            if done.is_done:
                return done.xcom_value
            self.defer(
                trigger=self._trigger(context),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout)),
            )
        finally:  # done, failed, rescheduled or deferred: the session ends with the try
            if self._hook is not None:
                self._hook.close()
                self._hook = None
        return None  # not reached: defer() raises

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        self.log.info("jobmon trigger: %s", event)
        return self._finish(event)


class JobmonCheckSensor(_JobmonSensor):
    """Wait until ``check_job_status`` is OK.

    Keeps waiting while the worst alert is below ``fail_level``; fails at once (no retries)
    on an alert at or above it.

    :param jobmon_conn_id: the Airflow connection of the jobmon database. (templated)
    :param history: how far back the check looks: a timedelta, a string such as
        ``"3 days"``, or None for the longest configured window. (templated)
    :param fail_level: the lowest alert code that fails the task at once (default 3,
        CRITICAL).
    :param deferrable: wait in the triggerer (:class:`JobmonCheckTrigger`), holding no
        worker slot.
    :param job_name: deprecated: use :class:`JobmonJobRunSensor`, which this sensor then
        behaves as (with its XCom).
    :param since: deprecated, with ``job_name``.
    :return: pushed to XCom: the alerts of the healthy check, a list of dicts with the keys
        ``alert_code``, ``alert_status``, ``job_name`` and ``alert_text``.
    """

    template_fields: Sequence[str] = ("jobmon_conn_id", "history", "job_name", "since")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        history: timedelta | str | None = None,
        fail_level: int = 3,
        job_name: str | None = None,
        since: datetime | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.history = history
        self.fail_level = check_fail_level(fail_level)
        self.job_name = job_name
        self.since = since
        if job_name is not None:
            warnings.warn(
                "JobmonCheckSensor(job_name=...) is deprecated: use "
                "jobmon_airflow.sensors.jobmon.JobmonJobRunSensor(job_name=...)",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )

    def _poke(self, jobmon: Jobmon, context: Any) -> PokeReturnValue:
        if self.job_name is not None:
            return _job_run_poke(self, jobmon, self.job_name, _since(self.since, context))
        alerts = jobmon.check_job_status(as_history(self.history), shared_state=True)
        self.log.info("jobmon check:\n%s", alerts_table(alerts))
        _raise_if_failing(alerts, self.fail_level)
        return PokeReturnValue(
            is_done=all(a.is_ok for a in alerts), xcom_value=[a.to_dict() for a in alerts]
        )

    def _trigger(self, context: Any) -> JobmonCheckTrigger:
        if self.job_name is not None:
            return _job_run_trigger(self, self.job_name, _since(self.since, context))
        history = as_history(self.history)
        return JobmonCheckTrigger(
            jobmon_conn_id=self.jobmon_conn_id,
            poke_interval=float(self.poke_interval),
            fail_level=self.fail_level,
            history=None if history is None else f"{history.total_seconds()}s",
        )

    def _finish(self, event: dict[str, Any]) -> Any:
        if "alerts" not in event:  # the deprecated job_name mode
            return _job_run_finish(event)
        if event["status"] == "success":
            return event["alerts"]
        alerts = [Alert(**a) for a in event["alerts"]]
        _raise_if_failing(alerts, self.fail_level)
        raise AirflowFailException(f"jobmon check failed: {problems_text(alerts)}")


class JobmonJobRunSensor(_JobmonSensor):
    """Wait for a run of one job, started at or after ``since``, to finish ``OK``.

    Say, a job logged inside the database by pg_cron or pg_partman, or another DAG. Keeps
    waiting while no such run has started or while it runs; fails at once (no retries)
    when it failed.

    :param job_name: the jobmon job's name (matched as the database stores it, upper-cased).
        (templated)
    :param since: the earliest start of a run that counts: a timezone-aware datetime or an
        ISO 8601 string. Default: the start of the DAG run's data interval, else its logical
        date, else when it started. (templated)
    :param jobmon_conn_id: the Airflow connection of the jobmon database. (templated)
    :param deferrable: wait in the triggerer (:class:`JobmonCheckTrigger`), holding no
        worker slot.
    :return: pushed to XCom: ``{"job_id": <the run's job id>, "status": "OK"}``.
    """

    template_fields: Sequence[str] = ("jobmon_conn_id", "job_name", "since")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        job_name: str,
        since: datetime | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_name = job_name
        self.since = since

    def _poke(self, jobmon: Jobmon, context: Any) -> PokeReturnValue:
        return _job_run_poke(self, jobmon, self.job_name, _since(self.since, context))

    def _trigger(self, context: Any) -> JobmonCheckTrigger:
        return _job_run_trigger(self, self.job_name, _since(self.since, context))

    def _finish(self, event: dict[str, Any]) -> Any:
        return _job_run_finish(event)


# -- the job-run wait, shared with JobmonCheckSensor's deprecated job_name mode ---------------


def _since(since: datetime | str | None, context: Any) -> datetime:
    return as_datetime(since) if since not in (None, "") else since_of(context)


def _job_run_poke(
    sensor: _JobmonSensor, jobmon: Jobmon, job_name: str, since: datetime
) -> PokeReturnValue:
    state = jobmon.run_state(job_name, since)
    sensor.log.info("job %s since %s: %s", job_name, since.isoformat(), state.state)
    if state.state == "failed":
        raise AirflowFailException(
            f"job {job_name!r} failed: run {state.job_id} ended with status {state.status!r}"
        )
    return PokeReturnValue(
        is_done=state.state == "succeeded",
        xcom_value={"job_id": state.job_id, "status": state.status},
    )


def _job_run_trigger(sensor: _JobmonSensor, job_name: str, since: datetime) -> JobmonCheckTrigger:
    return JobmonCheckTrigger(
        jobmon_conn_id=sensor.jobmon_conn_id,
        poke_interval=float(sensor.poke_interval),
        job_name=job_name,
        since=since.isoformat(),
    )


def _job_run_finish(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("status") == "success":
        return {"job_id": event.get("job_id"), "status": event.get("run_status")}
    raise AirflowFailException(
        f"job {event.get('job_name')!r} failed: run {event.get('job_id')} ended with status "
        f"{event.get('run_status')!r}"
    )


def _raise_if_failing(alerts: list[Alert], fail_level: int) -> None:
    bad = failing(alerts, fail_level)
    if bad:
        raise AirflowFailException(
            f"jobmon check found {len(bad)} problem(s) at level >= {fail_level}: "
            + problems_text(bad)
        )


__all__ = ["JobmonCheckSensor", "JobmonJobRunSensor"]
