"""End-to-end DAG with no jobmon code that fails: the listener fails its job (DAG run hooks in
the scheduler)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

with DAG("e2e_listener_fails", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def breaks() -> None:
        raise RuntimeError("asked to fail")

    breaks()
