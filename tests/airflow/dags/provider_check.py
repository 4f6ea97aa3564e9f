"""Test DAGs for JobmonCheckOperator, JobmonCheckSensor and JobmonJobRunSensor (run with
dag.test())."""

from __future__ import annotations

import warnings
from datetime import datetime

from airflow.sdk import DAG

from jobmon_airflow.operators.jobmon import JobmonCheckOperator
from jobmon_airflow.sensors.jobmon import JobmonCheckSensor, JobmonJobRunSensor

START = datetime(2026, 1, 1)

with DAG("jobmon_test_check", schedule=None, start_date=START, catchup=False) as check_dag:
    JobmonCheckOperator(task_id="check", history="{{ params.history }}", params={"history": ""})

with DAG("jobmon_test_check_warn", schedule=None, start_date=START, catchup=False) as warn_dag:
    JobmonCheckOperator(task_id="check", fail_level=2)

with DAG("jobmon_test_sensor", schedule=None, start_date=START, catchup=False) as sensor_dag:
    JobmonCheckSensor(task_id="poke", poke_interval=0.5, timeout=20)

with DAG("jobmon_test_sensor_job", schedule=None, start_date=START, catchup=False) as job_dag:
    JobmonJobRunSensor(
        task_id="wait_for_job",
        job_name="nightly load",
        since="{{ params.since }}",
        params={"since": ""},
        poke_interval=0.5,
        timeout=20,
    )

with DAG("jobmon_test_sensor_resched", schedule=None, start_date=START, catchup=False) as res_dag:
    JobmonJobRunSensor(
        task_id="wait_for_job",
        job_name="nightly load",
        since="{{ params.since }}",
        params={"since": ""},
        mode="reschedule",
        poke_interval=1,
        timeout=30,
    )

with DAG("jobmon_test_sensor_defer", schedule=None, start_date=START, catchup=False) as defer_dag:
    JobmonJobRunSensor(
        task_id="wait_for_job",
        job_name="nightly load",
        since="{{ params.since }}",
        params={"since": ""},
        deferrable=True,
        poke_interval=0.5,
        timeout=30,
    )

with DAG("jobmon_test_sensor_defer_check", schedule=None, start_date=START, catchup=False) as (
    defer_check_dag
):
    JobmonCheckSensor(task_id="poke", deferrable=True, poke_interval=0.5, timeout=30)

# The deprecated form: JobmonCheckSensor(job_name=...) still waits for a job's run (its
# warning is asserted in test_sensors.py, not repeated at each parse of this file).
with (
    DAG("jobmon_test_sensor_job_old", schedule=None, start_date=START, catchup=False) as old_dag,
    warnings.catch_warnings(),
):
    warnings.simplefilter("ignore")
    JobmonCheckSensor(
        task_id="wait_for_job",
        job_name="nightly load",
        since="{{ params.since }}",
        params={"since": ""},
        poke_interval=0.5,
        timeout=20,
    )
