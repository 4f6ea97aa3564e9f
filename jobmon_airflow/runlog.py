"""The Airflow run model, shared by the callbacks and the listener.

One DAG run is one jobmon job (named after the dag_id, upper-cased by the database), keyed
``airflow:<dag_id>/<run_id>``; each task try is one step, keyed
``<task_id>[<map_index>]#<try_number>``. Keys make every write a get-or-create, so tasks in
different processes find the same job, a rescheduled sensor keeps one step per try, and a
DAG logged by both the callbacks and the listener is not logged twice.

Logging never breaks a task or a DAG run: every failure is caught and logged as one warning,
and after a connection failure this process stops trying for a while (a jobmon outage costs
one connect timeout, not one per call).

Speed: in production every task try runs in a process of its own, so its first logging call
pays for a new database connection (TCP, authentication: 4-7 ms). The start of a task is
therefore logged in a background thread, overlapping the task's own work; the end of the
try waits for that thread (bounded) and needs one round trip, with the step id it found.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jobmon_core import JobFinishedError, Jobmon, JobmonConnectionError
from jobmon_core.context import describe as describe_exception
from jobmon_core.validation import storable

log = logging.getLogger("jobmon_airflow")

OUTAGE_BACKOFF = 60.0
"""Seconds a process skips logging after it could not reach the jobmon database."""

STEP_OK, STEP_RETRY, STEP_FAILED, STEP_SKIPPED = "OK", "WARNING", "CRITICAL", "SKIPPED"
DAG_FAILED_STEP = "DAG run failed"

START_WAIT = 30.0
"""Seconds the end of a task try waits for the logging of its start (connect timeout plus
lock and statement time-outs stay below this)."""

_down_until: dict[str, float] = {}
_jobmons: dict[str, Jobmon] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class TaskTry:
    """What identifies a task try, read from the TaskInstance in the calling thread."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int | None
    try_number: int | None

    @classmethod
    def of(cls, ti: Any) -> TaskTry:
        return cls(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), ti.try_number)

    @property
    def step_key(self) -> str:
        return step_key(self.task_id, self.map_index, self.try_number)

    @property
    def action(self) -> str:
        return action(self.task_id, self.map_index, self.try_number)


@dataclass
class _Start:
    """The logging of a task try's start, running in the background in this process."""

    jobmon: Jobmon
    step_id: int | None = None
    done: threading.Event = field(default_factory=threading.Event)


_starts: dict[tuple[str, TaskTry], _Start] = {}


@atexit.register
def _wait_for_starts() -> None:
    """A process that logged a start but never its end still gets the start written."""
    for start in list(_starts.values()):
        start.done.wait(START_WAIT)


def run_key(dag_id: str, run_id: str) -> str:
    return f"airflow:{dag_id}/{run_id}"


def step_key(task_id: str, map_index: int | None, try_number: int | None) -> str:
    return f"{task_id}[{-1 if map_index is None else map_index}]#{try_number or 1}"


def action(task_id: str, map_index: int | None, try_number: int | None) -> str:
    mapped = f" [map {map_index}]" if map_index is not None and map_index >= 0 else ""
    return f"{task_id}{mapped} [try {try_number or 1}]"


def describe(error: BaseException | str | None) -> str | None:
    """A try's error as its step message (``ValueError: boom``), made storable as the core's
    context managers make it: a NUL or lone surrogate in the text must not keep the step
    from being closed."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        return describe_exception(error)
    return storable(str(error))


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

        connection = JobmonHook(self.jobmon_conn_id).connection
        conninfo, schema = JobmonHook.conninfo_from(connection)
        options = JobmonHook.jobmon_options(connection)
        key = "\0".join([conninfo, schema, repr(sorted(options.items()))])
        with _lock:
            jobmon = _jobmons.get(key)
            if jobmon is None:
                jobmon = Jobmon(
                    conninfo, schema=schema, application_name="airflow-jobmon", **options
                )
                _jobmons[key] = jobmon
            return jobmon

    def _in_backoff(self) -> bool:
        """Still in the back-off after an outage: skip without waiting."""
        return time.monotonic() < _down_until.get(self.jobmon_conn_id, 0.0)

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any failure into one warning; an outage also starts the back-off."""
        try:
            yield
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

    def _safely(self, what: str, call: Callable[[Jobmon], Any]) -> None:
        if self._in_backoff():
            return
        with self._guard(what):
            call(self._jobmon())

    def _job(self, jobmon: Jobmon, dag_id: str, run_id: str) -> int:
        return jobmon.add_job(self.job_name or dag_id, run_key=run_key(dag_id, run_id))

    def _step(self, jobmon: Jobmon, task_try: TaskTry) -> int:
        job_id = self._job(jobmon, task_try.dag_id, task_try.run_id)
        return jobmon.add_step(job_id, task_try.action, step_key=task_try.step_key)

    # -- task tries -------------------------------------------------------------------------

    def task_started(self, ti: Any) -> None:
        """Log the try's start in a background thread: the task does not wait for it.

        Only database work goes to the thread: the connection is looked up here, because
        Airflow's channel to its supervisor belongs to the task's thread."""
        task_try = TaskTry.of(ti)
        what = f"the start of {task_try.task_id}"
        if self._in_backoff():
            return
        with self._guard(what):
            start = _Start(self._jobmon())

            def work() -> None:
                try:
                    with self._guard(what):
                        start.step_id = self._step(start.jobmon, task_try)
                finally:
                    start.done.set()

            _starts[self.jobmon_conn_id, task_try] = start
            threading.Thread(target=work, name="pg-jobmon-task-start", daemon=True).start()

    def task_finished(self, ti: Any, status: str, message: str | None) -> None:
        task_try = TaskTry.of(ti)
        what = f"the end of {task_try.task_id}"
        start = _starts.pop((self.jobmon_conn_id, task_try), None)
        if start is not None and start.done.wait(START_WAIT) and start.step_id is not None:
            if not self._in_backoff():
                with self._guard(what):
                    start.jobmon.update_step(start.step_id, status, message)
            return
        # No start logged in this process (a callback run elsewhere, or the start failed):
        # find or create the step by its key.
        self._safely(what, lambda jm: jm.update_step(self._step(jm, task_try), status, message))

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
