"""Test DAG with no jobmon code at all: only the listener logs it."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, get_current_context, task

with DAG(
    "jobmon_test_listener",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"fail": False},
    default_args={"retry_delay": timedelta(seconds=0)},
) as listener_dag:

    @task
    def first() -> None:
        if get_current_context()["params"]["fail"]:
            raise RuntimeError("asked to fail")

    @task(retries=1)
    def retried() -> None:
        if get_current_context()["ti"].try_number == 1:
            raise ConnectionError("try again")

    first() >> retried()
