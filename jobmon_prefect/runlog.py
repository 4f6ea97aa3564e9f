"""The Prefect run model: every flow run a job, every task try a step.

A flow run is one job, named after the flow (upper-cased by the database; ``job_name=``
overrides it) and keyed ``prefect:<flow_run.id>``: a retried flow run, its tasks in worker
threads, and the runner process that runs ``on_crashed``/``on_cancellation`` after the flow's
own process died all find the same job. A subflow is a flow run of its own, so a job of its
own. A task try is one step, keyed ``<task_run.id>#<try>`` and named ``<task name> [try N]``
(the task's stable name, as Airflow's task_id; the key keeps the calls and tries apart):

* a try that Prefect retries ``WARNING`` (no hook hears a failed try: the next try's
  ``on_running``, in state ``Retrying``, closes the previous one; Prefect hands it no error);
* a success ``OK``; a cache hit ``OK`` with ``cache hit: result from cache``;
* a final failure (retries used up, or a time-out) ``CRITICAL`` with the error;
* a try that never reported its end ``CRITICAL`` when its flow run fails, crashes or is
  cancelled, ``WARNING`` when it completes (a ``.submit()`` whose result nobody waited for).

The flow run's end closes the job ``OK``, or fails it ``CRITICAL`` with a last step saying
why (failed, timed out, crashed, cancelled). Every write is a get-or-create by key, so the
hooks and the event follower (:mod:`jobmon_prefect.follower`) never log a run twice.

Only a flow run creates its job: task hooks log into the job of their flow run and log
nothing (one warning per process) when it has none, since nothing would ever end a job a
task created. Put :func:`~jobmon_prefect.jobmon_flow_hooks` on the flow, or run the follower.

Logging never breaks or slows a flow beyond a bound: a hook only snapshots its arguments and
queues the write for the process's background writer (:mod:`jobmon_prefect.background`);
a flow run's end waits for its queued writes at most 15 s. Every write is guarded
(:class:`~jobmon_core.runs.RunGuard`: one warning, then a 60 s back-off, during which only
a flow run's end still makes one attempt, so that no job stays open for ever), the connect
timeout is 5 s, lock and statement time-outs bound every write, and TCP keepalives and
``tcp_user_timeout`` a write on a dead network (:data:`~jobmon_prefect.blocks.NETWORK_TIMEOUTS`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jobmon_core import Jobmon
from jobmon_core.context import describe as describe_exception
from jobmon_core.forking import forget_in_child
from jobmon_core.runs import (
    STEP_FAILED,
    STEP_OK,
    STEP_RETRY,
    close_open_steps,
    finish_step_once,
)
from jobmon_core.validation import storable

from .background import writer
from .destination import Destination, destination

log = logging.getLogger("jobmon_prefect")

RUN_KEY_PREFIX = "prefect:"
FLOW_END_KEY = "flow:end"
FALLBACK_JOB_NAME = "prefect flow"
CACHE_HIT = "cache hit: result from cache"
RETRIED = "failed; retried as try {next} (Prefect reports no error for a retried try)"
UNFINISHED = "the try reported no end before its flow run ended {state}"
ABANDONED = "the try reported no end before its flow run completed (nothing waited for it)"
NO_JOB = (
    "pg-jobmon: not logging the task runs of flow run %s (and of any other flow without a "
    "jobmon job): task hooks log into their flow run's job and never start one, since "
    "nothing would end it. Add **jobmon_flow_hooks() to the flow, or run the follower "
    "(python -m jobmon_prefect.follower)"
)
_ENDINGS = {
    "FAILED": "flow run failed",
    "CRASHED": "flow run crashed",
    "CANCELLING": "flow run cancelled",
    "CANCELLED": "flow run cancelled",
}
_PREFIXES = ("Flow run encountered an exception: ", "Task run encountered an exception ")
_JOB_LOOKUP = 50
"""Newest runs of a job name searched for a flow run's job that this process did not log."""
_KNOWN = 4096
"""Job and step ids remembered per process (oldest forgotten first): enough for every task
try still running, bounded for a long-lived runner."""


def run_key(flow_run_id: object) -> str:
    return f"{RUN_KEY_PREFIX}{flow_run_id}"


def step_key(task_run_id: object, try_number: int) -> str:
    return f"{task_run_id}#{try_number}"


def action(task_name: str, try_number: int) -> str:
    return f"{task_name} [try {try_number}]"


def task_name(task: Any, task_run: Any) -> str:
    """The task's own name; without the task (an event), the task run's name without the
    ``-<dynamic key>`` Prefect appends to it (a custom ``task_run_name`` stays whole)."""
    name = getattr(task, "name", None)
    if name:
        return str(name)
    run_name = str(getattr(task_run, "name", None) or "task")
    dynamic_key = str(getattr(task_run, "dynamic_key", None) or "")
    for suffix in (f"-{dynamic_key}", f"-{dynamic_key[:3]}"):
        if dynamic_key and run_name.endswith(suffix) and len(run_name) > len(suffix):
            return run_name[: -len(suffix)]
    return run_name


def flow_retry_key(try_number: int) -> str:
    return f"flow#{try_number}"


def state_type(state: Any) -> str:
    kind = getattr(state, "type", "")
    return str(getattr(kind, "value", kind)).upper()


def describe_state(state: Any) -> str | None:
    """A failed state's error as a step message: ``ValueError: boom`` when the exception is
    at hand (in the run's own process, kept in the state's result record), else Prefect's
    message without its ``Task run encountered an exception`` prefix (``Task run exceeded
    timeout of 1 second(s)`` stays as it is)."""
    data = getattr(state, "data", None)
    error = data if isinstance(data, BaseException) else getattr(data, "result", None)
    if isinstance(error, BaseException):
        return describe_exception(error)
    message = str(getattr(state, "message", None) or "")
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return storable(message) if message else None


class _Known:
    """A small, thread-safe, bounded map of ids this process already has."""

    def __init__(self) -> None:
        self._items: OrderedDict[Any, int] = OrderedDict()
        self._lock = threading.Lock()
        forget_in_child(self)

    def after_fork_in_child(self) -> None:
        """A forked child gets a fresh lock (the ids stay valid: same database)."""
        self._lock = threading.Lock()

    def get(self, key: Any) -> int | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: Any, value: int) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > _KNOWN:
                self._items.popitem(last=False)

    def pop(self, key: Any) -> int | None:
        with self._lock:
            return self._items.pop(key, None)


_jobs = _Known()  # (destination serial, flow run id) -> job_id
_steps = _Known()  # (destination serial, task run id, try) -> step_id


@dataclass(frozen=True)
class FlowState:
    """What a flow hook was handed, taken in the hook's own thread (Prefect reuses and
    changes its objects; the run context is the thread's)."""

    flow_run_id: str
    run_name: str
    flow_name: str | None
    run_count: int
    kind: str
    state_name: str
    reason: str | None

    @classmethod
    def of(cls, flow: Any, flow_run: Any, state: Any) -> FlowState:
        kind = state_type(state)
        return cls(
            str(flow_run.id),
            str(getattr(flow_run, "name", None) or flow_run.id),
            getattr(flow, "name", None),
            int(getattr(flow_run, "run_count", 0) or 0),
            kind,
            str(getattr(state, "name", None) or kind.title()),
            describe_state(state) if kind in _ENDINGS else None,
        )


@dataclass(frozen=True)
class TaskState:
    """What a task hook was handed (see :class:`FlowState`)."""

    flow_run_id: str
    flow_name: str | None
    task_run_id: str
    name: str
    try_number: int
    kind: str
    message: str | None

    @classmethod
    def of(cls, task: Any, task_run: Any, state: Any, flow_name: str | None) -> TaskState | None:
        flow_run_id = getattr(task_run, "flow_run_id", None)
        if flow_run_id is None:  # a task called outside any flow: no run to log it in
            return None
        kind = state_type(state)
        message = None
        if kind == "COMPLETED" and getattr(state, "name", "") == "Cached":
            message = CACHE_HIT
        elif kind in ("FAILED", "CRASHED"):
            message = describe_state(state)
        return cls(
            str(flow_run_id),
            flow_name or _current_flow_name(),
            str(task_run.id),
            task_name(task, task_run),
            max(1, int(getattr(task_run, "run_count", 1) or 1)),
            kind,
            message,
        )


_Run = TypeVar("_Run", FlowState, TaskState)
_Taken = TypeVar("_Taken")


class RunLogger:
    """Writes the run model to one destination. Every public method is safe: it never
    raises and is bounded in time.

    ``background=True`` (the hooks): the writes go to the process's background writer
    (:mod:`jobmon_prefect.background`) and a task waits for none of them; a flow run's end
    waits for its queued writes, bounded. ``exclusive=False`` (an observer next to others:
    the event follower next to the hooks) finishes only steps still open, never rewriting
    another observer's end. ``tasks_create_job=True`` (the follower, which always sees the
    flow run's end too) lets a task try create its flow run's job if it comes first."""

    def __init__(
        self,
        block: str | None = None,
        *,
        job_name: str | None = None,
        exclusive: bool = True,
        background: bool = True,
        tasks_create_job: bool = False,
    ) -> None:
        self.block = block
        self.job_name = job_name
        self.exclusive = exclusive
        self.background = background
        self.tasks_create_job = tasks_create_job

    # -- plumbing ---------------------------------------------------------------------------

    def _where(self, what: str, *, terminal: bool = False) -> Destination | None:
        """The destination, or None while it backs off after an outage; a ``terminal``
        write (a flow run's end) still makes its one attempt, bounded by the connect
        timeout, so that a job does not stay open for ever after a short outage."""
        try:
            where = destination(self.block)
        except Exception as exc:  # an unusable DSN in the environment, say
            log.warning("pg-jobmon: not logging %s: %s: %s", what, type(exc).__name__, exc)
            return None
        if where.jobmon is None or (where.guard.in_backoff and not terminal):
            return None
        return where

    def _write(
        self,
        what: str,
        rows: Callable[[Destination, _Run], None],
        run: _Run,
        *,
        terminal: bool = False,
    ) -> None:
        """Write ``rows`` of ``run`` to the destination, guarded: never raises."""
        where = self._where(what, terminal=terminal)
        if where is not None:
            with where.guard(what):
                rows(where, run)

    def _run(self, work: Callable[[], None], *, last: bool = False) -> None:
        if not self.background:
            work()
            return
        writer.submit(work)
        if last:  # the run's end: its rows are all written when the flow returns
            writer.drain()

    def job_id(self, where: Destination, flow_run_id: str, flow_name: str | None) -> int:
        """The job of a flow run, created if no process created it yet."""
        known = _jobs.get((where.serial, flow_run_id))
        if known is not None:
            return known
        name = self.job_name or flow_name or FALLBACK_JOB_NAME
        job_id = _jobmon(where).add_job(name, run_key=run_key(flow_run_id))
        _jobs.put((where.serial, flow_run_id), job_id)
        return job_id

    def existing_job_id(
        self, where: Destination, flow_run_id: str, flow_name: str | None
    ) -> int | None:
        """The job of a flow run if its flow run logged one (in this process: remembered;
        in another, a task runner's process: among the newest runs of its name), else None."""
        known = _jobs.get((where.serial, flow_run_id))
        if known is not None:
            return known
        key = run_key(flow_run_id)
        name = self.job_name or flow_name or FALLBACK_JOB_NAME
        for job in _jobmon(where).show_job(name, _JOB_LOOKUP):
            if job.run_key == key:
                _jobs.put((where.serial, flow_run_id), job.job_id)
                return job.job_id
        return None  # not remembered: its flow run's job may still be on its way

    # -- flow runs --------------------------------------------------------------------------

    def flow_state(self, flow: Any, flow_run: Any, state: Any) -> None:
        """A flow hook: the run started, was retried, or ended."""
        snapshot = _snapshot("a flow run's state", FlowState.of, flow, flow_run, state)
        if snapshot is not None:
            self._run(lambda: self._write_flow(snapshot), last=snapshot.kind != "RUNNING")

    def _write_flow(self, run: FlowState) -> None:
        what = f"{run.kind.lower()} of flow run {run.run_name}"
        self._write(what, self._flow_rows, run, terminal=run.kind != "RUNNING")

    def _flow_rows(self, where: Destination, run: FlowState) -> None:
        jobmon = _jobmon(where)
        job_id = self.job_id(where, run.flow_run_id, run.flow_name)
        if run.kind == "RUNNING":
            self._flow_running(jobmon, job_id, run.run_count)
        elif run.kind == "COMPLETED":
            close_open_steps(jobmon, job_id, STEP_RETRY, ABANDONED)
            jobmon.close_job(job_id)
        elif run.kind in _ENDINGS:
            self._flow_failed(jobmon, job_id, run)

    @staticmethod
    def _flow_running(jobmon: Jobmon, job_id: int, run_count: int) -> None:
        # run_count is 0 in the first try's hook, N when try N+1 starts after N failed
        if run_count >= 1:
            step_id = jobmon.add_step(
                job_id, f"flow run [try {run_count}]", step_key=flow_retry_key(run_count)
            )
            jobmon.update_step(
                step_id, STEP_RETRY, f"the flow run failed and is retried as try {run_count + 1}"
            )

    @staticmethod
    def _flow_failed(jobmon: Jobmon, job_id: int, run: FlowState) -> None:
        ending = _ENDINGS[run.kind]
        close_open_steps(jobmon, job_id, STEP_FAILED, UNFINISHED.format(state=run.state_name))
        finish_step_once(jobmon, job_id, FLOW_END_KEY, ending, STEP_FAILED, run.reason or ending)
        jobmon.fail_job(job_id)

    # -- task tries -------------------------------------------------------------------------

    def task_state(
        self, task: Any, task_run: Any, state: Any, *, flow_name: str | None = None
    ) -> None:
        """A task hook: a try started (the previous one, if any, was retried) or ended.
        ``flow_name`` names the job if this call creates it (default: the flow of the
        thread's run context)."""
        snapshot = _snapshot("a task run's state", TaskState.of, task, task_run, state, flow_name)
        if snapshot is not None:
            self._run(lambda: self._write_task(snapshot))

    def _write_task(self, run: TaskState) -> None:
        what = f"{run.kind.lower()} of task run {run.name} [try {run.try_number}]"
        self._write(what, self._task_rows, run)

    def _task_rows(self, where: Destination, run: TaskState) -> None:
        if self.tasks_create_job:
            job_id: int | None = self.job_id(where, run.flow_run_id, run.flow_name)
        else:
            job_id = self.existing_job_id(where, run.flow_run_id, run.flow_name)
        if job_id is None:
            _warn_no_job(run.flow_run_id)
            return
        if run.kind == "RUNNING":
            if run.try_number > 1:
                retried = RETRIED.format(next=run.try_number)
                self._finish(where, job_id, run, run.try_number - 1, STEP_RETRY, retried)
            step_id = _jobmon(where).add_step(
                job_id,
                action(run.name, run.try_number),
                step_key=step_key(run.task_run_id, run.try_number),
            )
            if self.exclusive:
                _steps.put((where.serial, run.task_run_id, run.try_number), step_id)
        elif run.kind == "COMPLETED":
            self._finish(where, job_id, run, run.try_number, STEP_OK, run.message)
        elif run.kind in ("FAILED", "CRASHED"):
            self._finish(where, job_id, run, run.try_number, STEP_FAILED, run.message)

    def _finish(
        self,
        where: Destination,
        job_id: int,
        run: TaskState,
        try_number: int,
        status: str,
        message: str | None,
    ) -> None:
        jobmon = _jobmon(where)
        if self.exclusive:  # the only observer: a try it started is its own to end
            step_id = _steps.pop((where.serial, run.task_run_id, try_number))
            if step_id is not None:  # started by this process: one round trip
                jobmon.update_step(step_id, status, message)
                return
        key = step_key(run.task_run_id, try_number)
        finish_step_once(jobmon, job_id, key, action(run.name, try_number), status, message)


_warned_no_job = threading.Event()


def _warn_no_job(flow_run_id: str) -> None:
    """One warning per process: every task of such a flow would repeat it."""
    if not _warned_no_job.is_set():
        _warned_no_job.set()
        log.warning(NO_JOB, flow_run_id)


def _jobmon(where: Destination) -> Jobmon:
    assert where.jobmon is not None  # RunLogger._where hands out only usable destinations
    return where.jobmon


def _snapshot(what: str, take: Callable[..., _Taken | None], *args: Any) -> _Taken | None:
    """``take(*args)``, or None with a warning if Prefect handed something unexpected."""
    try:
        return take(*args)
    except Exception as exc:
        log.warning("pg-jobmon: cannot read %s: %s: %s", what, type(exc).__name__, exc)
        return None


def _current_flow_name() -> str | None:
    """The flow of the run this thread works for (a task hook is not handed the flow)."""
    try:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
    except Exception:
        return None
    flow = getattr(context, "flow", None)
    return getattr(flow, "name", None)
