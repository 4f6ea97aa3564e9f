"""Task and DAG callbacks that log every DAG run as a jobmon job and every task try as a step.

    default_args = {**jobmon_task_callbacks(), "retries": 1}
    with DAG("my_etl", default_args=default_args, **jobmon_dag_callbacks()):
        ...

A task's success is a step ``OK``; a failed try that will be retried ``WARNING`` with the
exception; a final failure ``CRITICAL`` with the exception's type and message; a skip a
``SKIPPED`` step saying why. The DAG run closes the job (``OK``) or fails it (``CRITICAL``,
with a last step holding the reason). A cleared run that ran again is a new job (see
:mod:`jobmon_airflow.runlog`). Callbacks you already have are kept: use
:func:`merge_callbacks` to combine them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from .runlog import (
    STEP_FAILED,
    STEP_OK,
    STEP_RETRY,
    STEP_SKIPPED,
    RunLogger,
    describe,
    run_attempt,
)

Callback = Callable[[Any], None]


class DagCallbacks(TypedDict):
    """What :func:`jobmon_dag_callbacks` returns: typed key by key, so that a type checker
    accepts ``DAG(..., **jobmon_dag_callbacks())`` (a plain dict's values would have to fit
    every one of DAG's parameters)."""

    on_success_callback: Callback
    on_failure_callback: Callback


SKIPPED_BY_TASK = "the task raised AirflowSkipException (Airflow passes no reason to callbacks)"


def jobmon_task_callbacks(
    jobmon_conn_id: str = "jobmon_default", *, job_name: str | None = None
) -> dict[str, Callback]:
    """The five task callbacks, to spread into ``default_args`` or one task's arguments.

    ``job_name`` overrides the job's name (default: the dag_id, upper-cased).
    """
    run_log = RunLogger(jobmon_conn_id, job_name=job_name)

    def on_execute(context: Any) -> None:
        run_log.task_started(context["ti"])

    def on_success(context: Any) -> None:
        run_log.task_finished(context["ti"], STEP_OK, None)

    def on_retry(context: Any) -> None:
        message = describe(context.get("exception"))
        run_log.task_finished(context["ti"], STEP_RETRY, f"{message} (will be retried)")

    def on_failure(context: Any) -> None:
        run_log.task_finished(context["ti"], STEP_FAILED, describe(context.get("exception")))

    def on_skipped(context: Any) -> None:
        # Airflow 3 hands no exception (so no reason) to skip callbacks; say what is known.
        reason = describe(context.get("exception")) or SKIPPED_BY_TASK
        run_log.task_finished(context["ti"], STEP_SKIPPED, f"skipped: {reason}")

    return {
        "on_execute_callback": on_execute,
        "on_success_callback": on_success,
        "on_retry_callback": on_retry,
        "on_failure_callback": on_failure,
        "on_skipped_callback": on_skipped,
    }


def jobmon_dag_callbacks(
    jobmon_conn_id: str = "jobmon_default", *, job_name: str | None = None
) -> DagCallbacks:
    """The DAG's ``on_success_callback`` / ``on_failure_callback``, to spread into ``DAG(...)``."""
    run_log = RunLogger(jobmon_conn_id, job_name=job_name)

    def ids(context: Any) -> tuple[str, str, str | None]:
        """The run attempt the callback is about. Airflow hands a minimal context (no
        ``dag_run``) when the run has no task instance to describe: the attempt is unknown
        then, and nothing is logged (a warning says so)."""
        dag_run = context.get("dag_run")
        if dag_run is None:
            return context["dag"].dag_id, context["run_id"], None
        return dag_run.dag_id, dag_run.run_id, run_attempt(dag_run)

    def on_success(context: Any) -> None:
        run_log.dag_succeeded(*ids(context))

    def on_failure(context: Any) -> None:
        reason = context.get("reason")
        run_log.dag_failed(*ids(context), f"reason: {reason}" if reason else None)

    return {"on_success_callback": on_success, "on_failure_callback": on_failure}


def merge_callbacks(*sets: dict[str, Any]) -> dict[str, list[Callback]]:
    """Combine callback dicts (yours and ours) into lists, so none replaces another."""
    merged: dict[str, list[Callback]] = {}
    for callbacks in sets:
        for name, value in callbacks.items():
            if value is None:
                continue
            merged.setdefault(name, []).extend(
                value if isinstance(value, list | tuple) else [value]
            )
    return merged
