"""A flow served by a real Prefect runner (``flow.serve()``), for the crash and cancellation
tests: its run holds a task open until the test kills or cancels it. Run as a script; the
runner re-imports it from this file to run the flow's crash and cancellation hooks."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, task

from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks


@task(**jobmon_task_hooks())
def hold(pid_file: str) -> None:
    """Say where the flow run's process is, then wait to be killed or cancelled."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


@flow(name="served_sleeper", **jobmon_flow_hooks())
def served_sleeper(pid_file: str) -> None:
    hold(pid_file)


if __name__ == "__main__":
    served_sleeper.serve(name="sleeper")
