"""The Airflow run model, shared by the callbacks and the listener.

One attempt of a DAG run is one jobmon job (named after the dag_id, upper-cased by the
database), keyed ``airflow:<dag_id>/<run_id>@<start_date>/<run_after>``; each task try is
one step, keyed ``<task_id>[<map_index>]#<try_number>``. Keys make every write a
get-or-create, so tasks in different processes find the same job, a rescheduled sensor
keeps one step per try, and a DAG logged by both the callbacks and the listener is not
logged twice.

Why the DagRun's ``start_date`` and ``run_after`` (UTC, to the microsecond) in the key: a
``run_id`` alone is not unique. A scheduled run's id is derived from its date, so a second
Airflow installation logging into the same database, or the same one after ``airflow db
reset``, makes the same ids again, and would find (and rewrite) the finished jobs of the
old runs. The start date is when this attempt of the run began, on the wall clock;
``run_after`` covers ``dag.test()``/``airflow dags test`` with a given logical date, which
reuse the run id *and* use the logical date as the start date, but stamp ``run_after`` with
the time of the call. Both are the one identity every process of a run attempt is handed
for free, without a query to Airflow's database: the task SDK's DagRun (task callbacks, the
listener's task hooks, through the TaskInstance's run context), the ORM DagRun (the
listener's DAG-run hooks in the scheduler, an ORM TaskInstance's joined ``dag_run``) and
the execution API's DagRun (DAG callbacks in the dag-processor, taken when the run ended, so
a late callback still names its own attempt). The DagRun's primary key restarts at 1 after
a reset, and ``clear_number`` also counts clears of a run that is still running (whose new
tries belong to the attempt under way), so neither would do.

Clearing a *finished* run starts a new attempt: Airflow gives the run a new start date, so
the re-run is a new job with the same ``airflow:<dag_id>/<run_id>@`` prefix. The failed
attempt's job keeps its status, end time and steps (a finished job is never reopened or
rewritten), the newest job of the run is its last attempt, and when the re-run succeeds the
database's trigger clears the DAG's recorded failures, so ``check_job_status`` recovers.
Clearing tasks of a run that is still running keeps its start date: the new tries are steps
of the same job. A write that comes late for its attempt (a DAG callback after the listener
closed the job) finds the closed job and changes nothing. Only a DAG callback given no
DagRun at all (Airflow hands a minimal context when the run has no task instance to
describe) falls back to the bare ``airflow:<dag_id>/<run_id>``.

Logging never breaks a task or a DAG run: every failure is caught and logged as one warning.
After a connection failure, or a set-up problem that the next call would hit again (the
schema missing or older than this pg-jobmon, a missing privilege), this process stops
trying for a while: an outage costs one connect timeout and one warning, not one per call.

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
from datetime import UTC, datetime
from typing import Any

from jobmon_core import JobFinishedError, Jobmon, JobmonConnectionError
from jobmon_core.context import describe as describe_exception
from jobmon_core.runs import (  # the run model's pieces both orchestrators share
    OUTAGE_BACKOFF,
    STEP_FAILED,
    STEP_OK,
    STEP_RETRY,
    STEP_SKIPPED,
    set_up_problem,
)
from jobmon_core.runs import server_message as _server_message
from jobmon_core.validation import storable

log = logging.getLogger("jobmon_airflow")

# re-exported: the callbacks and the listener import the statuses from here
__all__ = ["OUTAGE_BACKOFF", "STEP_FAILED", "STEP_OK", "STEP_RETRY", "STEP_SKIPPED"]

DAG_FAILED_STEP = "DAG run failed"
DAG_FAILED_KEY = "dag_run:failed"

START_WAIT = 30.0
"""Seconds the end of a task try waits for the logging of its start (connect timeout plus
lock and statement time-outs stay below this)."""

LOOKUP_TIMEOUT = 10.0
"""Seconds a process without a supervisor (the scheduler) waits for a connection lookup."""

_down_until: dict[str, float] = {}
_jobmons: dict[str, tuple[str, Jobmon]] = {}
"""The Jobmon of each conn id, with the settings it was made from. Only the newest is kept:
a connection edited while a scheduler or dag-processor runs closes the old logging session."""
_lock = threading.Lock()


def _has_supervisor() -> bool:
    """True in a task, DAG-callback or trigger process, whose connection lookups go through
    a channel to its supervisor that belongs to the calling thread (no database session)."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def lookup_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id``, looked up without touching the caller's database
    session, from wherever it is stored (secrets backends, environment, metadata database).

    In the scheduler (and the api-server) Airflow's own lookup reads the metadata database
    through ``MetastoreBackend.get_connection``, whose ``@provide_session`` takes the
    thread's *scoped* session: the very session the scheduler is scheduling with. Its
    ``session.commit()`` then trips the scheduler's ``prohibit_commit`` guard ("UNEXPECTED
    COMMIT"), the session is rolled back and closed, every object in it (the DagRun being
    scheduled) is detached, and the scheduler dies. So without a supervisor the lookup runs
    in a thread of its own, which gets its own scoped session, and is waited for at most
    :data:`LOOKUP_TIMEOUT` seconds."""
    from .hooks.jobmon import JobmonHook

    if _has_supervisor():
        return JobmonHook(conn_id).connection
    found: list[Any] = []
    failed: list[BaseException] = []

    def lookup() -> None:
        try:
            found.append(JobmonHook(conn_id).connection)
        except Exception as exc:  # raised in the caller's thread instead
            failed.append(exc)

    thread = threading.Thread(target=lookup, name="pg-jobmon-connection-lookup", daemon=True)
    thread.start()
    thread.join(LOOKUP_TIMEOUT)
    if failed:
        raise failed[0]
    if not found:
        raise JobmonConnectionError(
            f"the Airflow connection {conn_id!r} could not be looked up within "
            f"{LOOKUP_TIMEOUT:.0f} s (a slow secrets backend or metadata database?)"
        )
    return found[0]


def _close_quietly(jobmon: Jobmon) -> None:
    try:
        jobmon.close()
    except Exception as exc:
        log.debug("pg-jobmon: could not close the session of an edited connection: %s", exc)


@dataclass(frozen=True)
class TaskTry:
    """What identifies a task try, read from the TaskInstance in the calling thread."""

    dag_id: str
    run_id: str
    attempt: str | None
    task_id: str
    map_index: int | None
    try_number: int | None

    @classmethod
    def of(cls, ti: Any) -> TaskTry:
        return cls(
            ti.dag_id,
            ti.run_id,
            run_attempt(ti),
            ti.task_id,
            getattr(ti, "map_index", -1),
            ti.try_number,
        )

    @property
    def run_key(self) -> str:
        return run_key(self.dag_id, self.run_id, self.attempt)

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


def run_key(dag_id: str, run_id: str, attempt: str | None) -> str:
    """The key of one attempt of a DAG run (:func:`run_attempt`; the module's docstring
    says why a run id alone is not enough). Callers log nothing when the attempt is unknown
    (:meth:`RunLogger._attempt_known`); the bare key is only for reading old rows."""
    key = f"airflow:{dag_id}/{run_id}"
    return f"{key}@{attempt}" if attempt else key


def run_attempt(source: Any) -> str | None:
    """Which attempt of its DAG run ``source`` belongs to, as the run key writes it: the
    DagRun's ``start_date`` and ``run_after`` in UTC to the microsecond,
    ``2026-05-01T02:00:03.123456Z/2026-05-01T00:00:00.000000Z``; None if Airflow did not
    hand them over.

    ``source`` is whatever Airflow gives the caller: a DagRun (ORM, task SDK or execution
    API model), a task SDK RuntimeTaskInstance (its run context holds the DagRun) or an ORM
    TaskInstance (its ``dag_run`` is loaded with it). Nothing here queries Airflow."""
    try:
        dag_run = source
        context = getattr(source, "_ti_context_from_server", None)
        if context is not None:
            dag_run = context.dag_run
        elif hasattr(source, "task_id"):
            dag_run = source.dag_run
        started, run_after = dag_run.start_date, dag_run.run_after
    except Exception:  # an object without them, or a detached ORM object
        return None
    if not isinstance(started, datetime) or not isinstance(run_after, datetime):
        return None
    return f"{_utc(started)}/{_utc(run_after)}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        same, and closed once it is edited."""
        from .hooks.jobmon import JobmonHook

        connection = lookup_connection(self.jobmon_conn_id)
        conninfo, schema = JobmonHook.conninfo_from(connection)
        options = JobmonHook.jobmon_options(connection)
        key = "\0".join([conninfo, schema, repr(sorted(options.items()))])
        with _lock:
            cached = _jobmons.get(self.jobmon_conn_id)
            if cached is not None and cached[0] == key:
                return cached[1]
            jobmon = Jobmon(conninfo, schema=schema, application_name="airflow-jobmon", **options)
            _jobmons[self.jobmon_conn_id] = (key, jobmon)
        if cached is not None:  # the connection was edited: the old session goes
            _close_quietly(cached[1])
        return jobmon

    @staticmethod
    def _attempt_known(attempt: str | None, what: str, dag_id: str, run_id: str) -> bool:
        """Without the run's attempt (Airflow handed no DagRun, or one without its dates),
        any job found by the run id alone could be another attempt's, finished, or another
        installation's: log nothing rather than write into the wrong job."""
        if attempt is None:
            log.warning(
                "pg-jobmon: not logging %s: Airflow handed no start date of run %s of %s, so "
                "its attempt (and its jobmon job) cannot be told apart from others",
                what,
                run_id,
                dag_id,
            )
        return attempt is not None

    def _in_backoff(self) -> bool:
        """Still in the back-off after an outage: skip without waiting."""
        return time.monotonic() < _down_until.get(self.jobmon_conn_id, 0.0)

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any failure into one warning; an outage, or a set-up problem the next call
        would hit again, also starts the back-off (one warning, not one per call)."""
        try:
            yield
        except JobmonConnectionError as exc:
            self._back_off(what, "cannot reach the jobmon database", str(exc))
        except JobFinishedError:
            log.debug("pg-jobmon: %s was logged already", what)
        except Exception as exc:
            problem = _set_up_problem(exc)
            if problem is None:
                log.warning("pg-jobmon: could not log %s: %s: %s", what, type(exc).__name__, exc)
            else:
                self._back_off(what, problem, _server_message(exc))

    def _back_off(self, what: str, problem: str, detail: str) -> None:
        _down_until[self.jobmon_conn_id] = time.monotonic() + OUTAGE_BACKOFF
        log.warning(
            "pg-jobmon: %s; not logging %s (and skipping jobmon logging in this process for "
            "%.0f s): %s",
            problem,
            what,
            OUTAGE_BACKOFF,
            detail,
        )

    def _safely(self, what: str, call: Callable[[Jobmon], Any]) -> None:
        if self._in_backoff():
            return
        with self._guard(what):
            call(self._jobmon())

    def _job(self, jobmon: Jobmon, dag_id: str, key: str) -> int:
        return jobmon.add_job(self.job_name or dag_id, run_key=key)

    def _step(self, jobmon: Jobmon, task_try: TaskTry) -> int:
        job_id = self._job(jobmon, task_try.dag_id, task_try.run_key)
        return jobmon.add_step(job_id, task_try.action, step_key=task_try.step_key)

    # -- task tries -------------------------------------------------------------------------

    def task_started(self, ti: Any) -> None:
        """Log the try's start in a background thread: the task does not wait for it.

        Only database work goes to the thread: the connection is looked up here, because
        Airflow's channel to its supervisor belongs to the task's thread."""
        task_try = TaskTry.of(ti)
        what = f"the start of {task_try.task_id}"
        if self._in_backoff() or not self._attempt_known(
            task_try.attempt, what, task_try.dag_id, task_try.run_id
        ):
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
        if not self._attempt_known(task_try.attempt, what, task_try.dag_id, task_try.run_id):
            return
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

    def dag_succeeded(self, dag_id: str, run_id: str, attempt: str | None) -> None:
        """Close the job of the run's ``attempt`` (:func:`run_attempt` of the DagRun Airflow
        handed over)."""
        what = f"the success of {dag_id}"
        if not self._attempt_known(attempt, what, dag_id, run_id):
            return
        key = run_key(dag_id, run_id, attempt)
        self._safely(what, lambda jm: jm.close_job(self._job(jm, dag_id, key)))

    def dag_failed(self, dag_id: str, run_id: str, attempt: str | None, reason: str | None) -> None:
        what = f"the failure of {dag_id}"
        if not self._attempt_known(attempt, what, dag_id, run_id):
            return
        key = run_key(dag_id, run_id, attempt)

        def fail(jm: Jobmon) -> None:
            job_id = self._job(jm, dag_id, key)
            # The listener and the DAG callback both report a failure; the later one (or a
            # retry of one that broke off) must not rewrite the failure step of a failed
            # job: it only makes sure the job is failed (JobFinishedError if it is).
            if not any(s.step_key == DAG_FAILED_KEY for s in jm.show_detail(job_id)):
                step_id = jm.add_step(job_id, DAG_FAILED_STEP, step_key=DAG_FAILED_KEY)
                jm.update_step(step_id, STEP_FAILED, reason or "the DAG run failed")
            jm.fail_job(job_id)

        self._safely(what, fail)


def _set_up_problem(exc: Exception) -> str | None:
    """What is wrong with the jobmon set-up if ``exc`` says so (every later call of this
    process would fail the same way), else None (a failure of this one call): the core's
    set-up problems, and a connection Airflow does not know."""
    problem = set_up_problem(exc)
    if problem is not None:
        return problem
    from ._compat import AirflowNotFoundException

    if isinstance(exc, AirflowNotFoundException):
        return "the jobmon connection is not defined in Airflow"
    return None
