"""End-to-end DAG for run identity (tests/airflow/test_run_identity.py): ``work`` fails until
the file named by ``JOBMON_E2E_FLAG`` exists, so a test can fail a run, clear it and watch
the re-run succeed. Logged by the callbacks and, when enabled, the listener too."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from jobmon_airflow.callbacks import jobmon_dag_callbacks, jobmon_task_callbacks

with DAG(
    "e2e_rerun",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=jobmon_task_callbacks(),
    **jobmon_dag_callbacks(),
):

    @task
    def first() -> int:
        return 1

    @task
    def work(value: int) -> int:
        if not Path(os.environ["JOBMON_E2E_FLAG"]).exists():
            raise RuntimeError("not ready yet")
        return value

    work(first())  # type: ignore[arg-type]  # Airflow types @task arguments without XComArg
