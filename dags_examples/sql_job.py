"""A multi-statement SQL job with ``JobmonSqlOperator``.

Shows: one jobmon job (``DAILY ORDER SUMMARY``) for the task, each statement a step with
``Rows affected: N``, all in one transaction that rolls back (log kept) if one fails.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from jobmon_airflow.operators.jobmon import JobmonSqlOperator

with DAG(
    "daily_order_summary",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["pg-jobmon", "example"],
) as dag:
    JobmonSqlOperator(
        task_id="summarize",
        job_name="daily order summary",
        sql=[
            "CREATE TABLE IF NOT EXISTS public.order_summary (day date PRIMARY KEY,"
            " orders bigint, total numeric)",
            "DELETE FROM public.order_summary WHERE day = %(day)s",
            "INSERT INTO public.order_summary SELECT %(day)s, count(*), coalesce(sum(amount), 0)"
            " FROM public.orders",
        ],
        parameters={"day": "{{ ds }}"},
    )
