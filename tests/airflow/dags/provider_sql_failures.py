"""Test DAG for the ways a JobmonSqlOperator run can fail (run with dag.test()).

The two statements come from the run's conf, so one DAG covers a failing commit (a deferred
constraint), a dropped connection, a statement cut by the task's execution timeout.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from jobmon_airflow.operators.jobmon import JobmonSqlOperator

with DAG(
    "jobmon_test_sql_failures", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
) as failures_dag:
    JobmonSqlOperator(
        task_id="load",
        sql=["{{ params.first }}", "{{ params.second }}"],
        job_name="sql failures",
        params={"first": "SELECT 1", "second": "SELECT 2"},
        execution_timeout=timedelta(seconds=3),
    )
