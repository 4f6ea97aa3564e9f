"""End-to-end DAG logged by the callbacks (DAG callbacks run in the dag-processor)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from jobmon_airflow.callbacks import jobmon_dag_callbacks, jobmon_task_callbacks

with DAG(
    "e2e_callbacks",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args=jobmon_task_callbacks(),
    **jobmon_dag_callbacks(),
):

    @task
    def one() -> int:
        return 1

    @task
    def two(value: int) -> int:
        return value + 1

    two(one())  # type: ignore[arg-type]  # Airflow types @task arguments without XComArg
