"""End to end with a real Airflow: api-server, scheduler and dag-processor (LocalExecutor),
the listener enabled by configuration. Under dag.test() everything runs in one process; here
task callbacks and listener task hooks run in task processes, DAG callbacks in the
dag-processor, and the listener's DAG-run hooks inside the scheduler, which must survive.
Here the jobmon connection is an ``AIRFLOW_CONN_...`` environment variable; stored in the
metadata database or a secrets backend: test_listener_scheduler.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.airflow_env import jobmon_connection

from .real_airflow import real_airflow

pytestmark = pytest.mark.e2e

E2E_DAGS = Path(__file__).parent / "e2e_dags"


def test_a_real_scheduler_logs_callbacks_and_listener_runs(dsn, jm):
    env = {
        "AIRFLOW__JOBMON__ENABLE_LISTENER": "True",
        "AIRFLOW_CONN_JOBMON_DEFAULT": jobmon_connection(dsn, jm.schema),
    }
    with real_airflow(E2E_DAGS, env) as af:
        dag_ids = ("e2e_callbacks", "e2e_listener", "e2e_listener_fails")
        af.wait_parsed(*dag_ids)
        af.trigger_all((dag_id, f"e2e_{dag_id}") for dag_id in dag_ids)

        def finished() -> bool:
            jobs = [job for dag_id in dag_ids for job in jm.show_job(dag_id)]
            return len(jobs) == 3 and all(j.status for j in jobs)

        af.wait("the runs to be logged and closed", finished)
        callbacks_job = jm.show_job("e2e_callbacks")[0]
        listener_job = jm.show_job("e2e_listener")[0]
        assert callbacks_job.status == "OK"  # closed by the DAG callback, in the dag-processor
        assert callbacks_job.run_key.startswith("airflow:e2e_callbacks/e2e_e2e_callbacks")
        assert [(s.action, s.status) for s in jm.show_detail(callbacks_job.job_id)] == [
            ("one [try 1]", "OK"),
            ("two [try 1]", "OK"),
        ]
        assert listener_job.status == "OK"  # closed by the listener, in the scheduler
        assert [(s.action, s.status) for s in jm.show_detail(listener_job.job_id)] == [
            ("only [try 1]", "OK"),
        ]
        failed_job = jm.show_job("e2e_listener_fails")[0]
        assert failed_job.status == "CRITICAL"  # failed by the listener, in the scheduler
        assert [(s.action, s.status) for s in jm.show_detail(failed_job.job_id)] == [
            ("breaks [try 1]", "CRITICAL"),
            ("DAG run failed", "CRITICAL"),
        ]
        time.sleep(2)
        af.assert_alive()
        scheduler_log = af.log("scheduler")
        for bad in ("DetachedInstanceError", "UNEXPECTED COMMIT", "could not log"):
            assert bad not in scheduler_log
