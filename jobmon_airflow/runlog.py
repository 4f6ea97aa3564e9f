"""The Airflow run model, shared by the callbacks and the listener.

One DAG run is one jobmon job (named after the dag_id, upper-cased by the database), keyed
``airflow:<dag_id>/<run_id>``; each task try is one step, keyed
``<task_id>[<map_index>]#<try_number>``. Keys make every write a get-or-create, so tasks in
different processes find the same job, a rescheduled sensor keeps one step per try, and a
DAG logged by both the callbacks and the listener is not logged twice.

Logging never breaks a task or a DAG run: every failure is caught and logged as one warning,
and after a connection failure this process stops trying for a while (a jobmon outage costs
one connect timeout, not one per call).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from jobmon_core import JobFinishedError, Jobmon, JobmonConnectionError

log = logging.getLogger("jobmon_airflow")

OUTAGE_BACKOFF = 60.0
"""Seconds a process skips logging after it could not reach the jobmon database."""

STEP_OK, STEP_RETRY, STEP_FAILED, STEP_SKIPPED = "OK", "WARNING", "CRITICAL", "SKIPPED"
DAG_FAILED_STEP = "DAG run failed"

_down_until: dict[str, float] = {}
_jobmons: dict[str, Jobmon] = {}
_lock = threading.Lock()


def run_key(dag_id: str, run_id: str) -> str:
    return f"airflow:{dag_id}/{run_id}"


def step_key(task_id: str, map_index: int | None, try_number: int | None) -> str:
    return f"{task_id}[{-1 if map_index is None else map_index}]#{try_number or 1}"


def action(task_id: str, map_index: int | None, try_number: int | None) -> str:
    mapped = f" [map {map_index}]" if map_index is not None and map_index >= 0 else ""
    return f"{task_id}{mapped} [try {try_number or 1}]"


def describe(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        text = str(error).strip()
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return str(error)


class RunLogger:
    """Writes the run model for one jobmon connection id. Every public method is safe."""

    def __init__(self, jobmon_conn_id: str = "jobmon_default", *, job_name: str | None = None):
        self.jobmon_conn_id = jobmon_conn_id
        self.job_name = job_name

    # -- plumbing ---------------------------------------------------------------------------

    def _jobmon(self) -> Jobmon:
        """The Jobmon of the connection as it is now (connections can be edited while a
        dag-processor runs); its logging connection is reused while the connection is the
        same."""
        from .hooks.jobmon import JobmonHook

        conninfo, schema = JobmonHook(self.jobmon_conn_id).get_conninfo()
        with _lock:
            jobmon = _jobmons.get(conninfo + "\0" + schema)
            if jobmon is None:
                jobmon = Jobmon(conninfo, schema=schema, application_name="airflow-jobmon")
                _jobmons[conninfo + "\0" + schema] = jobmon
            return jobmon

    def _safely(self, what: str, call: Callable[[Jobmon], Any]) -> None:
        if time.monotonic() < _down_until.get(self.jobmon_conn_id, 0.0):
            return  # still in the back-off after an outage: skip without waiting
        try:
            call(self._jobmon())
        except JobmonConnectionError as exc:
            _down_until[self.jobmon_conn_id] = time.monotonic() + OUTAGE_BACKOFF
            log.warning(
                "pg-jobmon: cannot reach the jobmon database; not logging %s (and skipping "
                "jobmon logging in this process for %.0f s): %s",
                what,
                OUTAGE_BACKOFF,
                exc,
            )
        except JobFinishedError:
            log.debug("pg-jobmon: %s was logged already", what)
        except Exception as exc:
            log.warning("pg-jobmon: could not log %s: %s: %s", what, type(exc).__name__, exc)

    def _job(self, jobmon: Jobmon, dag_id: str, run_id: str) -> int:
        return jobmon.add_job(self.job_name or dag_id, run_key=run_key(dag_id, run_id))

    def _step(self, jobmon: Jobmon, ti: Any) -> int:
        job_id = self._job(jobmon, ti.dag_id, ti.run_id)
        map_index = getattr(ti, "map_index", -1)
        return jobmon.add_step(
            job_id,
            action(ti.task_id, map_index, ti.try_number),
            step_key=step_key(ti.task_id, map_index, ti.try_number),
        )

    # -- task tries -------------------------------------------------------------------------

    def task_started(self, ti: Any) -> None:
        self._safely(f"the start of {ti.task_id}", lambda jm: self._step(jm, ti))

    def task_finished(self, ti: Any, status: str, message: str | None) -> None:
        self._safely(
            f"the end of {ti.task_id}",
            lambda jm: jm.update_step(self._step(jm, ti), status, message),
        )

    # -- DAG runs ---------------------------------------------------------------------------

    def dag_succeeded(self, dag_id: str, run_id: str) -> None:
        self._safely(
            f"the success of {dag_id}", lambda jm: jm.close_job(self._job(jm, dag_id, run_id))
        )

    def dag_failed(self, dag_id: str, run_id: str, reason: str | None) -> None:
        def fail(jm: Jobmon) -> None:
            job_id = self._job(jm, dag_id, run_id)
            step_id = jm.add_step(job_id, DAG_FAILED_STEP, step_key="dag_run:failed")
            jm.update_step(step_id, STEP_FAILED, reason or "the DAG run failed")
            jm.fail_job(job_id)

        self._safely(f"the failure of {dag_id}", fail)
