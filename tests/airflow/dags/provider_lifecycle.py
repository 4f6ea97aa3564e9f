"""Test DAGs for the hook's lifecycle: a sensor that pokes many times, in each mode.

``CountingJobRunSensor`` is the real sensor, counting its pokes so the test can say how many
there were. It waits for a job that never runs, until its timeout (soft_fail: skipped).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG

from jobmon_airflow.sensors.jobmon import JobmonCheckSensor, JobmonJobRunSensor

START = datetime(2026, 1, 1)
CONN = "lifecycle"
POKES: list[str] = []


class CountingJobRunSensor(JobmonJobRunSensor):
    def poke(self, context: Any) -> Any:
        POKES.append(self.task_id)
        return super().poke(context)


with DAG("jobmon_test_lifecycle", schedule=None, start_date=START, catchup=False) as poke_dag:
    CountingJobRunSensor(
        task_id="wait",
        jobmon_conn_id=CONN,
        job_name="never runs",
        since="2026-01-01T00:00:00+00:00",
        poke_interval=0.02,
        timeout=2.5,
        soft_fail=True,
    )

with DAG("jobmon_test_lifecycle_res", schedule=None, start_date=START, catchup=False) as res_dag:
    CountingJobRunSensor(
        task_id="wait",
        jobmon_conn_id=CONN,
        job_name="never runs",
        since="2026-01-01T00:00:00+00:00",
        mode="reschedule",
        poke_interval=0.5,
        timeout=2,
        soft_fail=True,
    )

with DAG("jobmon_test_lifecycle_defer", schedule=None, start_date=START, catchup=False) as (
    defer_dag
):
    JobmonCheckSensor(
        task_id="check", jobmon_conn_id=CONN, deferrable=True, poke_interval=0.2, timeout=20
    )
