"""The monitoring DAG: every 15 minutes, fail when jobmon finds a CRITICAL problem.

Shows: a ``job_check_config`` entry set up from a DAG (ETL_ORDERS must run every day; any
failed run alerts), ``JobmonCheckOperator`` failing the run (and so alerting the way your
Airflow alerts) on CRITICAL, and ``JobmonJobRunSensor`` waiting for today's ETL run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from jobmon_airflow.hooks.jobmon import JobmonHook
from jobmon_airflow.operators.jobmon import JobmonCheckOperator
from jobmon_airflow.sensors.jobmon import JobmonJobRunSensor

with DAG(
    "jobmon_monitoring",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["pg-jobmon", "example"],
) as dag:

    @task
    def configure_checks() -> None:
        """Idempotent: ETL_ORDERS is MISSING (warning) after 25 h, critical after 49 h."""
        with JobmonHook() as hook:
            hook.jobmon.configure_check(
                "etl_orders", warn=timedelta(hours=25), error=timedelta(hours=49), sensitivity=0
            )

    check = JobmonCheckOperator(task_id="check_jobs", fail_level=3)

    JobmonJobRunSensor(
        task_id="wait_for_todays_etl",
        job_name="etl_orders",
        # since midnight of the data interval's first day (microsecond=0: all of that day)
        since="{{ data_interval_start.replace(hour=0, minute=0, second=0, microsecond=0) }}",
        mode="reschedule",
        poke_interval=300,
        timeout=3600,
        soft_fail=True,  # not there yet: skip, the check above alerts if it is late
    )

    configure_checks() >> check
