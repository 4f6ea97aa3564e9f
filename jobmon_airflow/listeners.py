"""The opt-in listener: log every DAG run and task try, with no change to any DAG.

Enabled by configuration (``[jobmon] enable_listener = True``, or the environment variable
``AIRFLOW__JOBMON__ENABLE_LISTENER=True``), with ``[jobmon] conn_id`` (default
``jobmon_default``). It writes the same model as the callbacks, with the same keys, so a DAG
that also uses the callbacks is not logged twice.

It runs inside Airflow's own processes (task processes, and for DAG runs the scheduler), so
it touches nothing of Airflow's database session: it only reads attributes already loaded on
the objects it is given, it looks its connection up in a thread of its own where that lookup
may read the metadata database (see :func:`jobmon_airflow.runlog.lookup_connection`), every
call is bounded (lookup, connect, lock and statement timeouts), and every exception is caught.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from airflow.listeners import hookimpl

from .runlog import (
    STEP_FAILED,
    STEP_OK,
    STEP_RETRY,
    STEP_SKIPPED,
    RunLogger,
    describe,
    run_attempt,
)

SECTION = "jobmon"


def _setting(key: str, default: str) -> str:
    value = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if value is not None:
        return value
    try:
        from airflow.configuration import conf

        return str(conf.get(SECTION, key, fallback=default))
    except Exception:
        return default


def enabled() -> bool:
    return _setting("enable_listener", "False").strip().lower() in ("true", "1", "yes", "on")


def _logger() -> RunLogger:
    return RunLogger(_setting("conn_id", "jobmon_default"))


def _state(task_instance: Any) -> str:
    return str(getattr(task_instance.state, "value", task_instance.state) or "").lower()


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    with contextlib.suppress(Exception):  # never let logging reach Airflow
        _logger().task_started(task_instance)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    with contextlib.suppress(Exception):
        _logger().task_finished(task_instance, STEP_OK, None)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    try:
        if _state(task_instance) == "up_for_retry":
            message = f"{describe(error)} (will be retried)"
            _logger().task_finished(task_instance, STEP_RETRY, message)
        else:
            _logger().task_finished(task_instance, STEP_FAILED, describe(error))
    except Exception:
        pass


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    try:
        from .callbacks import SKIPPED_BY_TASK

        _logger().task_finished(task_instance, STEP_SKIPPED, f"skipped: {SKIPPED_BY_TASK}")
    except Exception:
        pass


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    with contextlib.suppress(Exception):
        _logger().dag_succeeded(dag_run.dag_id, dag_run.run_id, run_attempt(dag_run))


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    with contextlib.suppress(Exception):
        reason = f"reason: {msg}" if msg else None
        _logger().dag_failed(dag_run.dag_id, dag_run.run_id, run_attempt(dag_run), reason)
