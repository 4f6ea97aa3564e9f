"""The two sensors (#12.8): one job each, one XCom shape each, whichever way they wait
(poke, reschedule, deferred); the old ``JobmonCheckSensor(job_name=...)`` still works,
with a deprecation warning pointing at ``JobmonJobRunSensor``."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import load_dag_module, task_states

ALERT_KEYS = {"alert_code", "alert_status", "job_name", "alert_text"}


@pytest.fixture(scope="module")
def dags():
    return load_dag_module("provider_check")


def return_value(run: Any, task_id: str) -> Any:
    """The XCom a task of a finished ``dag.test()`` run returned."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value"
        )
        (row,) = session.scalars(query).all()
        return XComModel.deserialize_value(row)


def finish_later(jm, seconds: float) -> threading.Thread:
    def run() -> None:
        job = jm.add_job("nightly load")
        time.sleep(seconds)
        jm.close_job(job)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("dag_name", ["sensor_dag", "defer_check_dag"])
def test_the_check_sensor_pushes_the_alerts(jobmon_conn, dags, dag_name):
    run = getattr(dags, dag_name).test()
    assert run.state == "success", task_states(run)
    alerts = return_value(run, "poke")
    assert isinstance(alerts, list)
    assert alerts
    assert all(set(a) == ALERT_KEYS for a in alerts)
    assert alerts[0]["alert_code"] == 1


@pytest.mark.parametrize("dag_name", ["job_dag", "res_dag", "defer_dag", "old_dag"])
def test_the_job_run_sensor_pushes_the_run(jobmon_conn, dsn, jm, dags, dag_name):
    from jobmon_core import Jobmon

    other = Jobmon(dsn, schema=jm.schema)
    since = datetime.now(UTC).isoformat()
    thread = finish_later(other, 1.5)
    run = getattr(dags, dag_name).test(run_conf={"since": since})
    thread.join()
    other.close()
    assert run.state == "success", task_states(run)
    (job,) = jm.show_job("nightly load")
    assert return_value(run, "wait_for_job") == {"job_id": job.job_id, "status": "OK"}


def test_the_job_run_sensor_pushes_the_run_when_it_had_already_finished(jobmon_conn, jm, dags):
    since = datetime.now(UTC).isoformat()
    job = jm.add_job("nightly load")
    jm.close_job(job)
    for name in ("job_dag", "defer_dag"):  # answered by the first poke, no waiting
        run = getattr(dags, name).test(run_conf={"since": since})
        assert return_value(run, "wait_for_job") == {"job_id": job, "status": "OK"}


def test_the_job_name_form_of_the_check_sensor_is_deprecated():
    from jobmon_airflow._compat import AirflowProviderDeprecationWarning
    from jobmon_airflow.sensors.jobmon import JobmonCheckSensor, JobmonJobRunSensor

    with pytest.warns(AirflowProviderDeprecationWarning, match="JobmonJobRunSensor"):
        JobmonCheckSensor(task_id="old", job_name="nightly load")
    assert JobmonJobRunSensor(task_id="new", job_name="nightly load").job_name == "nightly load"
    with pytest.raises(TypeError):
        JobmonJobRunSensor(task_id="no_name")  # a job-run sensor needs its job
