"""Test DAG for JobmonSqlOperator (run with dag.test())."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from jobmon_airflow.operators.jobmon import JobmonSqlOperator

with DAG(
    "jobmon_test_sql", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
) as sql_dag:
    JobmonSqlOperator(
        task_id="load",
        sql=[
            "CREATE TABLE IF NOT EXISTS public.jobmon_sql_target (id int PRIMARY KEY, v text)",
            "INSERT INTO public.jobmon_sql_target VALUES (1, %(value)s), (2, %(value)s)",
            "{{ params.last_statement }}",
        ],
        parameters={"value": "{{ params.value }}"},
        params={"value": "x", "last_statement": "UPDATE public.jobmon_sql_target SET v = 'y'"},
    )

with DAG(
    "jobmon_test_sql_file", schedule=None, start_date=datetime(2026, 1, 1), catchup=False
) as sql_file_dag:
    JobmonSqlOperator(
        task_id="load_file",
        sql="provider_sql_file.sql",
        job_name="{{ dag.dag_id }} from a file",
        params={"rows": 5},
    )
