"""State hooks that log every flow run as a jobmon job and every task try as a step.

    from prefect import flow, task
    from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks

    @task(retries=1, **jobmon_task_hooks())
    def load(): ...

    @flow(**jobmon_flow_hooks())
    def nightly_etl(): load()

What each state logs is in :mod:`jobmon_prefect.runlog`. A flow someone else defined gets the
hooks next to its own with :func:`with_jobmon_hooks`.

The hooks' parameters are named ``flow, flow_run, state`` and ``task, task_run, state``
because Prefect's runner calls ``on_crashed``/``on_cancellation`` with keyword arguments.
"""

from __future__ import annotations

from typing import Any, TypeAlias, TypedDict, TypeVar

from prefect import Flow, State, Task
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.flows import FlowStateHook
from prefect.tasks import StateHookCallable

from jobmon_core import InvalidArgumentError

from .runlog import RunLogger

FlowHook: TypeAlias = FlowStateHook[..., Any]
TaskHook: TypeAlias = StateHookCallable
MARK = "__jobmon_hook__"
"""Attribute set on our hook functions, so that adding the hooks twice adds them once."""

FLOW_HOOK_NAMES = ("on_running", "on_completion", "on_failure", "on_crashed", "on_cancellation")
TASK_HOOK_NAMES = ("on_running", "on_completion", "on_failure")


class FlowHooks(TypedDict):
    """What :func:`jobmon_flow_hooks` returns, typed key by key for ``@flow(**hooks)``."""

    on_running: list[FlowHook]
    on_completion: list[FlowHook]
    on_failure: list[FlowHook]
    on_crashed: list[FlowHook]
    on_cancellation: list[FlowHook]


class TaskHooks(TypedDict):
    """What :func:`jobmon_task_hooks` returns, typed key by key for ``@task(**hooks)``."""

    on_running: list[TaskHook]
    on_completion: list[TaskHook]
    on_failure: list[TaskHook]


def _flow_hook(run_log: RunLogger) -> FlowHook:
    def jobmon_flow_hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
        run_log.flow_state(flow, flow_run, state)

    setattr(jobmon_flow_hook, MARK, True)
    return jobmon_flow_hook


def _task_hook(run_log: RunLogger) -> TaskHook:
    def jobmon_task_hook(task: Task[..., Any], task_run: TaskRun, state: State) -> None:
        run_log.task_state(task, task_run, state)

    setattr(jobmon_task_hook, MARK, True)
    return jobmon_task_hook


def jobmon_flow_hooks(block: str | None = None, *, job_name: str | None = None) -> FlowHooks:
    """The five flow hooks, to spread into ``@flow(...)``.

    ``block`` names a saved :class:`~jobmon_prefect.JobmonPostgres` block (default:
    ``JOBMON_PREFECT_BLOCK``, else ``JOBMON_DSN``, else libpq's variables); ``job_name``
    overrides the job's name (default: the flow's name, upper-cased)."""
    hook = _flow_hook(RunLogger(block, job_name=job_name))
    return {
        "on_running": [hook],
        "on_completion": [hook],
        "on_failure": [hook],
        "on_crashed": [hook],
        "on_cancellation": [hook],
    }


def jobmon_task_hooks(block: str | None = None, *, job_name: str | None = None) -> TaskHooks:
    """The three task hooks, to spread into ``@task(...)``. They log each try as a step
    of its flow run's job, which only the flow hooks (or the follower) create: a task of a
    flow without them logs nothing (one warning per process). ``job_name``: the name the
    flow's job was given with ``jobmon_flow_hooks(job_name=...)``, for a task run in another
    process than its flow run (default: the flow's name)."""
    hook = _task_hook(RunLogger(block, job_name=job_name))
    return {"on_running": [hook], "on_completion": [hook], "on_failure": [hook]}


Target = TypeVar("Target")


def with_jobmon_hooks(
    target: Target, block: str | None = None, *, job_name: str | None = None
) -> Target:
    """A copy of a flow (or task) someone else defined, with the jobmon hooks added after
    its own hooks, which all stay. A flow or task that has them already is returned
    unchanged (hooks added twice would log twice as many writes)."""
    run_log = RunLogger(block, job_name=job_name)
    names: tuple[str, ...]
    hook: Any
    if isinstance(target, Flow):
        names, hook = FLOW_HOOK_NAMES, _flow_hook(run_log)
    elif isinstance(target, Task):
        names, hook = TASK_HOOK_NAMES, _task_hook(run_log)
    else:
        raise InvalidArgumentError(
            f"with_jobmon_hooks takes a Prefect flow or task, not {target!r}"
        )
    options: dict[str, list[Any]] = {}
    for name in names:
        theirs = list(getattr(target, f"{name}_hooks"))
        if any(getattr(each, MARK, False) for each in theirs):
            return target
        options[name] = [*theirs, hook]
    copy: Target = target.with_options(**options)  # type: ignore[attr-defined]
    return copy
