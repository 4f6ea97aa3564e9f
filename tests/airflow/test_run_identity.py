"""Run identity (issue #13, items 4 and 5): one jobmon job per attempt of a DAG run.

A run id is not unique: a scheduled run's id is derived from its date, so another Airflow
installation logging into the same database, or the same one after ``airflow db reset``,
makes it again, and ``dag.test()`` with a logical date reuses it every time. Clearing a
finished run runs it again under the same id. Each of these is a new job; the job of the
earlier run or attempt stays exactly as it was (a finished job is never reopened or
rewritten), and a re-run that succeeds is a recovery for ``check_job_status``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools.airflow_env import jobmon_connection
from jobmon_core import Jobmon

from .conftest import load_dag_module, task_states
from .real_airflow import real_airflow

IDENTITY_DAGS = Path(__file__).parent / "identity_dags"


def jobs_of_run(jm: Jobmon, name: str, run_id: str) -> list:
    """The jobs of the run ``run_id`` of a DAG, oldest first."""
    key = f"airflow:{name}/{run_id}"
    return [
        j
        for j in reversed(jm.show_job(name, limit=100))
        if j.run_key is not None and (j.run_key == key or j.run_key.startswith(f"{key}@"))
    ]


# -- dag.test() ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def callbacks_dag():
    return load_dag_module("callbacks_dag").callbacks_dag


def forget_runs(dag_id: str) -> None:
    """Delete a DAG's runs from Airflow's metadata database, as ``airflow db reset`` would
    (dag.test() itself deletes a run this way before it makes its new one)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for dag_run in session.query(DagRun).filter(DagRun.dag_id == dag_id):
            session.delete(dag_run)


def test_a_run_id_seen_before_is_a_new_job_and_the_old_one_stays_as_it_was(
    jobmon_conn, jm, callbacks_dag
):
    """A run id made again after the metadata database forgot its run (a reset, another
    installation): dag.test() derives the run id from ``run_after``, so the same
    ``run_after`` gives the same id, while the run starts at another time."""
    run_after = datetime(2026, 3, 2, tzinfo=UTC)
    first = callbacks_dag.test(
        run_after=run_after, logical_date=datetime(2026, 3, 1, tzinfo=UTC), run_conf={"fail": True}
    )
    assert first.state == "failed", task_states(first)
    (old,) = jm.show_job("jobmon_test_callbacks")
    old_steps = jm.show_detail(old.job_id)
    assert old.status == "CRITICAL"

    forget_runs("jobmon_test_callbacks")
    second = callbacks_dag.test(
        run_after=run_after, logical_date=datetime(2026, 3, 2, tzinfo=UTC), run_conf={"fail": False}
    )
    assert second.state == "success", task_states(second)
    assert second.run_id == first.run_id

    again, new = jobs_of_run(jm, "jobmon_test_callbacks", first.run_id)
    assert again == old  # the same status and end time
    assert jm.show_detail(old.job_id) == old_steps  # no step rewritten, none added
    assert new.status == "OK"
    assert len(jm.show_detail(new.job_id)) == 7


# -- a real Airflow -----------------------------------------------------------------------


@pytest.mark.e2e
def test_a_cleared_run_and_a_reused_run_id_are_new_jobs_in_a_real_airflow(dsn, jm, tmp_path):
    """One start of a real Airflow (api-server, scheduler, dag-processor; the callbacks and
    the listener both logging) for both items:

    5. a finished, failed run is cleared and succeeds: the re-run is a new job with the run's
       prefix, the failed attempt's job is untouched, and ``check_job_status`` recovers;
    4. the DAG is deleted from Airflow (its runs with it, as by a metadata reset) and a run
       with the same run id is triggered: a new job again, the earlier two untouched."""
    flag = tmp_path / "ready"
    jm.configure_check("e2e_rerun", warn=timedelta(days=1), error=timedelta(days=2), sensitivity=0)
    env = {
        "AIRFLOW__JOBMON__ENABLE_LISTENER": "True",
        "AIRFLOW_CONN_JOBMON_DEFAULT": jobmon_connection(dsn, jm.schema),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
        "JOBMON_E2E_FLAG": str(flag),
    }
    with real_airflow(IDENTITY_DAGS, env, deadline=150) as af:
        af.wait_parsed("e2e_rerun")

        def closed(count: int) -> bool:
            jobs = jobs_of_run(jm, "e2e_rerun", "again")
            return len(jobs) == count and all(j.status for j in jobs)

        # The first attempt fails.
        af.trigger("e2e_rerun", "again")
        af.wait("the first attempt to be failed", lambda: closed(1))
        (failed,) = jobs_of_run(jm, "e2e_rerun", "again")
        failed_steps = jm.show_detail(failed.job_id)
        assert failed.status == "CRITICAL"
        assert [(s.action, s.status) for s in failed_steps] == [
            ("first [try 1]", "OK"),
            ("work [try 1]", "CRITICAL"),
            ("DAG run failed", "CRITICAL"),
        ]
        assert [(a.job_name, a.alert_code) for a in jm.check_job_status()] == [("E2E_RERUN", 3)]

        # Item 5: cleared, it runs again and succeeds, as a new job.
        flag.touch()
        af.airflow("tasks", "clear", "e2e_rerun", "--only-failed", "--yes")
        af.wait("the re-run to be closed", lambda: closed(2))
        again, rerun = jobs_of_run(jm, "e2e_rerun", "again")
        assert again == failed
        assert jm.show_detail(failed.job_id) == failed_steps
        assert rerun.status == "OK"
        assert [(s.action, s.status) for s in jm.show_detail(rerun.job_id)] == [
            ("work [try 2]", "OK"),
        ]
        assert [a.alert_code for a in jm.check_job_status()] == [1]  # recovered

        # Item 4: the run id again, in a new DagRun (the old one deleted with the DAG).
        af.airflow("dags", "delete", "e2e_rerun", "--yes")
        af.wait_parsed("e2e_rerun")
        af.trigger("e2e_rerun", "again")
        af.wait("the new run to be closed", lambda: closed(3))
        first_job, second_job, new = jobs_of_run(jm, "e2e_rerun", "again")
        assert (first_job, second_job) == (failed, rerun)
        assert jm.show_detail(failed.job_id) == failed_steps
        assert new.status == "OK"
        assert [(s.action, s.status) for s in jm.show_detail(new.job_id)] == [
            ("first [try 1]", "OK"),
            ("work [try 1]", "OK"),
        ]
        af.assert_alive()
        for name in ("scheduler", "dag-processor"):
            assert "could not log" not in af.log(name)
