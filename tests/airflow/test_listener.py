"""The opt-in listener: the same model as the callbacks, with no change to the DAG."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.airflow_env import jobmon_connection

from ..backends import backend_pids
from .conftest import load_dag_module

ATTEMPT = "2026-01-01T00:00:00.000000Z/2026-01-01T00:00:00.000000Z"
"""A run attempt as runlog.run_attempt writes it (a DagRun's start date / run_after)."""


@pytest.fixture
def listening(airflow_db) -> Iterator[None]:
    """The listener registered on Airflow's task-side and core listener managers."""
    from airflow.listeners.listener import get_listener_manager as core_manager

    from jobmon_airflow import listeners

    managers: list[Any] = [core_manager()]
    try:  # Airflow 3.2+: the task side has a listener manager of its own
        from airflow.sdk.listener import get_listener_manager as task_manager

        managers.append(task_manager())
    except ImportError:  # Airflow 3.1: one manager for both sides
        pass
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
    assert job.run_key.startswith(f"airflow:jobmon_test_listener/{run.run_id}")
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


@pytest.fixture
def jobmon_conn_in_db(dsn, jm, monkeypatch, airflow_db) -> Iterator[str]:
    """``jobmon_default`` stored in Airflow's metadata database only (``airflow connections
    add``), looked up as the scheduler looks it up (a server process: the metastore too)."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    from jobmon_airflow import runlog

    monkeypatch.delenv("AIRFLOW_CONN_JOBMON_DEFAULT", raising=False)
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    monkeypatch.setattr(runlog, "_down_until", {})
    stored = json.loads(jobmon_connection(dsn, jm.schema))
    stored["extra"] = json.dumps(stored["extra"])
    with create_session() as session:
        session.add(Connection(conn_id="jobmon_default", **stored))
    yield "jobmon_default"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "jobmon_default").delete()


@pytest.mark.parametrize("outcome", ["success", "failed"])
def test_a_dag_run_hook_leaves_the_schedulers_session_alone(
    jobmon_conn_in_db, jm, plain_dag, outcome
):
    """Issue #13: the scheduler calls the DAG-run hooks with the DagRun in its own scoped
    session, under its no-commit guard. Looking the connection up in the metadata database
    used to commit that session (tripping the guard), roll it back and close it, so the
    DagRun was detached and the scheduler died; the job stayed open."""
    from airflow.models import DagRun
    from airflow.settings import Session
    from airflow.utils.sqlalchemy import prohibit_commit

    from jobmon_airflow import listeners

    run_id = plain_dag.test(run_conf={"fail": outcome == "failed"}).run_id
    session = Session()
    try:
        with prohibit_commit(session):
            dag_run = session.query(DagRun).filter(DagRun.run_id == run_id).one()
            hook = getattr(listeners, f"on_dag_run_{outcome}")
            hook(dag_run=dag_run, msg=outcome)
            assert dag_run in session  # still the scheduler's, not detached
            assert dag_run.dag_model is not None  # the lazy load the scheduler died on
    finally:
        session.rollback()
        Session.remove()
    (job,) = jm.show_job("jobmon_test_listener")
    assert job.status == ("OK" if outcome == "success" else "CRITICAL")


def test_an_edited_connection_closes_its_old_logging_session(
    dsn, jm, admin, monkeypatch, airflow_db
):
    """Issue #12: a long-lived scheduler or dag-processor kept one Jobmon (and its open
    session) per version of a connection, forever. Only the newest is kept now."""
    from jobmon_airflow import runlog

    monkeypatch.setattr(runlog, "_jobmons", {})
    monkeypatch.setattr(runlog, "_down_until", {})
    logger = runlog.RunLogger("jobmon_edited")
    for version, timeout in enumerate([3, 4, 5], start=1):  # created, then edited twice
        conn = json.loads(jobmon_connection(dsn, jm.schema))
        conn["extra"].update(application_name="jobmon-edited", connect_timeout=timeout)
        monkeypatch.setenv("AIRFLOW_CONN_JOBMON_EDITED", json.dumps(conn))
        logger.dag_succeeded("edited", f"run_{version}", ATTEMPT)
        assert len(backend_pids(admin, "jobmon-edited")) == 1
    assert [job.status for job in jm.show_job("edited")] == ["OK", "OK", "OK"]
    for _, jobmon in runlog._jobmons.values():
        jobmon.close()


def test_a_task_failure_seen_by_the_scheduler_leaves_its_session_alone(
    jobmon_conn_in_db, jm, plain_dag
):
    """The scheduler also calls ``on_task_instance_failed`` itself, from
    ``TaskInstance.handle_failure`` with its own session (a task process that died, a task
    that stopped heartbeating): the same lookup must not detach that TaskInstance either."""
    from airflow.models import TaskInstance
    from airflow.settings import Session
    from airflow.utils.sqlalchemy import prohibit_commit
    from airflow.utils.state import TaskInstanceState

    from jobmon_airflow import listeners

    run_id = plain_dag.test(run_conf={"fail": True}).run_id
    session = Session()
    try:
        with prohibit_commit(session):
            ti = (
                session.query(TaskInstance)
                .filter(TaskInstance.run_id == run_id, TaskInstance.task_id == "first")
                .one()
            )
            listeners.on_task_instance_failed(
                previous_state=TaskInstanceState.RUNNING,
                task_instance=ti,
                error="Executor reported that the task instance finished with state failed",
            )
            assert ti in session
            assert ti.dag_run is not None  # a lazy load works: the session is still open
    finally:
        session.rollback()
        Session.remove()
    (job,) = jm.show_job("jobmon_test_listener")
    assert ("first [try 1]", "CRITICAL") in [
        (s.action, s.status) for s in jm.show_detail(job.job_id)
    ]


def test_a_hanging_secrets_backend_costs_a_bounded_wait(jm, monkeypatch, airflow_db, tmp_path):
    """The scheduler waits for a connection lookup at most ``LOOKUP_TIMEOUT`` seconds, then
    skips logging for the back-off: a secrets backend that hangs (here a connections file
    that is a FIFO nobody writes) must not hold the scheduling loop."""
    import importlib

    from jobmon_airflow import runlog

    fifo = tmp_path / "connections.json"
    os.mkfifo(fifo)
    try:  # Airflow 3.2+ caches the secrets backends in the task SDK
        sdk_configuration = importlib.import_module("airflow.sdk.configuration")
        monkeypatch.setattr(sdk_configuration, "_secrets_backend_cache", {})  # no stale ones
    except ImportError:  # Airflow 3.1: read from the configuration on each lookup
        pass
    monkeypatch.setenv(
        "AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    )
    monkeypatch.setenv(
        "AIRFLOW__SECRETS__BACKEND_KWARGS", json.dumps({"connections_file_path": str(fifo)})
    )
    monkeypatch.setattr(runlog, "LOOKUP_TIMEOUT", 1.0)
    monkeypatch.setattr(runlog, "_down_until", {})
    try:
        started = time.monotonic()
        runlog.RunLogger("jobmon_default").dag_succeeded("hanging", "run_1", ATTEMPT)
        assert 1.0 <= time.monotonic() - started < 3.0
        started = time.monotonic()
        runlog.RunLogger("jobmon_default").dag_failed("hanging", "run_2", ATTEMPT, "boom")
        assert time.monotonic() - started < 0.1  # in the back-off: no wait at all
        assert jm.show_job("hanging") == []
    finally:  # let the lookup thread finish: it is still reading the FIFO
        with contextlib.suppress(OSError):
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"{}")
            os.close(fd)


def test_an_undefined_connection_leaves_the_schedulers_session_alone(
    jobmon_conn_in_db, jm, plain_dag, monkeypatch
):
    """A ``[jobmon] conn_id`` stored nowhere (a typo) made the lookup fall through every
    backend to the metadata database too, so it crashed the scheduler the same way even
    where the real connection is an environment variable: now it is one warning."""
    from airflow.models import DagRun
    from airflow.settings import Session
    from airflow.utils.sqlalchemy import prohibit_commit

    from jobmon_airflow import listeners

    monkeypatch.setenv("AIRFLOW__JOBMON__CONN_ID", "jobmon_stored_nowhere")
    run_id = plain_dag.test(run_conf={"fail": False}).run_id
    session = Session()
    try:
        with prohibit_commit(session):
            dag_run = session.query(DagRun).filter(DagRun.run_id == run_id).one()
            listeners.on_dag_run_success(dag_run=dag_run, msg="success")
            assert dag_run in session
    finally:
        session.rollback()
        Session.remove()
