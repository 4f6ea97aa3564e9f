"""The opt-in listener: the same model as the callbacks, with no change to the DAG."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from .conftest import load_dag_module


@pytest.fixture
def listening(airflow_db) -> Iterator[None]:
    """The listener registered on Airflow's task-side and core listener managers."""
    from airflow.listeners.listener import get_listener_manager as core_manager
    from airflow.sdk.listener import get_listener_manager as task_manager

    from jobmon_airflow import listeners

    managers = [task_manager(), core_manager()]
    for manager in managers:
        manager.add_listener(listeners)
    yield
    for manager in managers:
        manager.pm.unregister(listeners)


@pytest.fixture(scope="module")
def plain_dag():
    return load_dag_module("listener_dag").listener_dag


@pytest.fixture(scope="module")
def callbacks_dag():
    return load_dag_module("callbacks_dag").callbacks_dag


def test_a_dag_without_callbacks_is_logged_by_the_listener(jobmon_conn, jm, listening, plain_dag):
    run = plain_dag.test(run_conf={"fail": False})
    assert run.state == "success"
    (job,) = jm.show_job("jobmon_test_listener")
    assert job.status == "OK"
    assert job.run_key == f"airflow:jobmon_test_listener/{run.run_id}"
    assert [(s.action, s.status) for s in jm.show_detail(job.job_id)] == [
        ("first [try 1]", "OK"),
        ("retried [try 1]", "WARNING"),
        ("retried [try 2]", "OK"),
    ]


def test_a_failed_run_is_failed_by_the_listener(jobmon_conn, jm, listening, plain_dag):
    assert plain_dag.test(run_conf={"fail": True}).state == "failed"
    (job,) = jm.show_job("jobmon_test_listener")
    assert job.status == "CRITICAL"
    steps = jm.show_detail(job.job_id)
    assert steps[-1].action == "DAG run failed"
    assert any(s.message == "RuntimeError: asked to fail" for s in steps)


def test_callbacks_and_listener_together_log_once(jobmon_conn, jm, listening, callbacks_dag):
    run = callbacks_dag.test(run_conf={"fail": True})
    assert run.state == "failed"
    (job,) = jm.show_job("jobmon_test_callbacks")
    actions = [s.action for s in jm.show_detail(job.job_id)]
    assert len(actions) == len(set(actions))  # one step per try, not one per writer
    assert len(jm.show_job_status("CRITICAL")) == 1
    assert [r["alert_code"] for r in _check_rows(jm)] == [3]  # counted once by the trigger


def _check_rows(jm):
    from psycopg.rows import dict_row
    from psycopg.sql import SQL, Identifier

    conn = jm._connection.connection()
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            SQL("SELECT * FROM {}").format(Identifier(jm.schema, "job_check_log"))
        ).fetchall()


def test_the_plugin_is_a_no_op_unless_enabled(monkeypatch):
    from jobmon_airflow import plugin

    monkeypatch.delenv("AIRFLOW__JOBMON__ENABLE_LISTENER", raising=False)
    assert importlib.reload(plugin).JobmonListenerPlugin.listeners == []
    monkeypatch.setenv("AIRFLOW__JOBMON__ENABLE_LISTENER", "True")
    (registered,) = importlib.reload(plugin).JobmonListenerPlugin.listeners
    assert registered.__name__ == "jobmon_airflow.listeners"


def test_listener_signatures_match_airflows_specs(airflow_db):
    """pluggy refuses a hook whose arguments differ from the spec, and Airflow then
    silently disables every listener: register ours in fresh managers to prove it fits."""
    from airflow.listeners.listener import ListenerManager

    from jobmon_airflow import listeners

    manager = ListenerManager()
    manager.add_listener(listeners)
    assert manager.has_listeners
