"""The callbacks, for real under dag.test(): one job per DAG run, one step per task try."""

from __future__ import annotations

import json
import logging
import time

import pytest

from jobmon_airflow.callbacks import SKIPPED_BY_TASK

from .conftest import load_dag_module, task_states


@pytest.fixture(scope="module")
def dag_module():
    return load_dag_module("callbacks_dag")


def steps_by_action(jm, job_id: int) -> dict[str, tuple[str | None, str | None]]:
    return {s.action: (s.status, s.message) for s in jm.show_detail(job_id)}


def test_a_successful_run_is_one_job_with_a_step_per_try(jobmon_conn, jm, dag_module):
    run = dag_module.callbacks_dag.test(run_conf={"fail": False})
    assert run.state == "success"
    (job,) = jm.show_job("jobmon_test_callbacks")
    assert job.status == "OK"
    attempt = f"{run.start_date:%Y-%m-%dT%H:%M:%S.%fZ}/{run.run_after:%Y-%m-%dT%H:%M:%S.%fZ}"
    assert job.run_key == f"airflow:jobmon_test_callbacks/{run.run_id}@{attempt}"
    steps = steps_by_action(jm, job.job_id)
    assert steps == {
        "extract [try 1]": ("OK", None),
        "flaky [try 1]": ("WARNING", "ConnectionError: database restarting (will be retried)"),
        "flaky [try 2]": ("OK", None),
        "skipper [try 1]": ("SKIPPED", f"skipped: {SKIPPED_BY_TASK}"),
        "load [map 0] [try 1]": ("OK", None),
        "load [map 1] [try 1]": ("OK", None),
        "finish [try 1]": ("OK", None),
    }
    assert "finish" in dag_module.SEEN  # the user's own callback still ran


def test_a_failed_run_fails_the_job_with_the_reason(jobmon_conn, jm, dag_module):
    run = dag_module.callbacks_dag.test(run_conf={"fail": True})
    assert run.state == "failed"
    (job,) = jm.show_job("jobmon_test_callbacks")
    assert job.status == "CRITICAL"
    steps = jm.show_detail(job.job_id)
    assert steps_by_action(jm, job.job_id)["finish [try 1]"] == (
        "CRITICAL",
        "ValueError: totals do not match",
    )
    assert steps[-1].action == "DAG run failed"
    assert steps[-1].status == "CRITICAL"
    assert steps[-1].message.startswith("reason: ")
    assert [a.alert_code for a in jm.check_job_status() if a.job_name] == []  # 1 failure only
    assert [r.status for r in jm.show_job_status("CRITICAL")] == ["CRITICAL"]


def test_an_error_text_postgresql_cannot_store_is_logged_escaped(jobmon_conn, jm, dag_module):
    """A NUL or a lone surrogate in an exception's text (bytes from a file or a socket) is
    made storable, so the failed try is still closed with its reason."""
    reason = "bad byte <NUL> in row 7, undecodable <SURROGATE>"
    run = dag_module.callbacks_dag.test(run_conf={"fail": True, "reason": reason})
    assert run.state == "failed"
    (job,) = jm.show_job("jobmon_test_callbacks")
    assert steps_by_action(jm, job.job_id)["finish [try 1]"] == (
        "CRITICAL",
        "ValueError: bad byte \\x00 in row 7, undecodable \\udcff",
    )


def test_three_failed_runs_alert_like_any_job(jobmon_conn, jm, dag_module):
    for _ in range(3):
        dag_module.callbacks_dag.test(run_conf={"fail": True})
    (alert,) = jm.check_job_status()
    assert (alert.job_name, alert.alert_text) == (
        "JOBMON_TEST_CALLBACKS",
        "3 consecutive CRITICAL runs",
    )


def test_a_jobmon_outage_never_breaks_the_dag(monkeypatch, airflow_db, dag_module, caplog):
    from jobmon_airflow import runlog

    monkeypatch.setattr(runlog, "_jobmons", {})
    monkeypatch.setattr(runlog, "_down_until", {})
    monkeypatch.setenv(
        "AIRFLOW_CONN_JOBMON_DEFAULT",
        json.dumps(
            {
                "conn_type": "jobmon",
                "host": "127.0.0.1",
                "port": 1,
                "login": "u",
                "password": "Outage-S3cret",
                "schema": "db",
            }
        ),
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="jobmon_airflow"):
        run = dag_module.callbacks_dag.test(run_conf={"fail": False})
    elapsed = time.monotonic() - started
    assert run.state == "success", task_states(run)
    warnings = [r for r in caplog.records if "cannot reach the jobmon database" in r.message]
    assert len(warnings) == 1  # one warning, then the process skips logging for a while
    assert "Outage-S3cret" not in caplog.text
    assert elapsed < 60


def test_a_missing_connection_never_breaks_the_dag(monkeypatch, airflow_db, dag_module, caplog):
    from jobmon_airflow import runlog

    monkeypatch.setattr(runlog, "_jobmons", {})
    monkeypatch.setattr(runlog, "_down_until", {})
    monkeypatch.delenv("AIRFLOW_CONN_JOBMON_DEFAULT", raising=False)
    with caplog.at_level(logging.WARNING, logger="jobmon_airflow"):
        run = dag_module.callbacks_dag.test(run_conf={"fail": False})
    assert run.state == "success"
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobmon_airflow"]
    assert len(warnings) == 1, warnings  # once, not at each task try's start and end
    assert "the jobmon connection is not defined in Airflow" in warnings[0]
    assert "jobmon_default" in warnings[0]


@pytest.mark.parametrize("schema_state", ["missing", "older"])
def test_a_schema_not_set_up_gives_one_warning_without_sql(
    schema_state, monkeypatch, dsn, admin, jm, airflow_db, dag_module, caplog
):
    """Issue #13: a missing schema gave two warnings per task try (its start and its end),
    each with psycopg's ``LINE 1: SELECT ... ^`` fragment. A schema that is not there, or
    older than this pg-jobmon (a function missing), is a set-up problem the next call hits
    again: one warning that says what to do, then the process skips jobmon for a while."""
    from psycopg import sql

    from devtools.airflow_env import jobmon_connection
    from jobmon_airflow import runlog

    monkeypatch.setattr(runlog, "_jobmons", {})
    monkeypatch.setattr(runlog, "_down_until", {})
    schema = jm.schema
    if schema_state == "missing":
        schema = f"{jm.schema}_never_installed"
    else:
        admin.execute(
            sql.SQL("DROP FUNCTION {}(text, text, text, integer)").format(
                sql.Identifier(jm.schema, "find_or_add_run_job")
            )
        )
    monkeypatch.setenv("AIRFLOW_CONN_JOBMON_DEFAULT", jobmon_connection(dsn, schema))
    with caplog.at_level(logging.WARNING, logger="jobmon_airflow"):
        run = dag_module.callbacks_dag.test(run_conf={"fail": False})
    assert run.state == "success", task_states(run)
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobmon_airflow"]
    assert len(warnings) == 1, warnings
    assert "the jobmon schema is missing or older than this pg-jobmon" in warnings[0]
    assert "jobmon install" in warnings[0]
    assert "LINE 1" not in warnings[0]
    assert "^" not in warnings[0]


def test_plugins_hear_each_logged_run_start_once(jobmon_conn, jm, dag_module):
    """Issue #12: ``jobmon_job_started`` never fired for a job with a run key, so never for a
    DAG run. It fires once per run, in the process that created the job, however many tasks
    found it again."""
    from jobmon_core.plugins import get_plugin_manager, hookimpl

    heard: list[tuple[int, str]] = []

    class Started:
        @hookimpl
        def jobmon_job_started(self, job_id: int, job_name: str) -> None:
            heard.append((job_id, job_name))

    plugin = Started()
    get_plugin_manager().register(plugin)
    try:
        run = dag_module.callbacks_dag.test(run_conf={"fail": False})
    finally:
        get_plugin_manager().unregister(plugin)
    assert run.state == "success"
    (job,) = jm.show_job("jobmon_test_callbacks")
    assert heard == [(job.job_id, "jobmon_test_callbacks")]


def test_a_dag_callback_without_its_run_logs_nothing_and_says_so(jobmon_conn, jm, caplog):
    """Airflow hands DAG callbacks a minimal context (no ``dag_run``) for a run it cannot
    describe: which attempt it is about is unknown, so the callback must neither create a
    job under the bare run id nor write into an older job that has it (a finished attempt,
    or another installation's run)."""
    from types import SimpleNamespace

    from jobmon_airflow.callbacks import jobmon_dag_callbacks

    old = jm.add_job("minimal", run_key="airflow:minimal/scheduled__2026-01-01")
    jm.close_job(old)
    callbacks = jobmon_dag_callbacks()
    context = {"dag": SimpleNamespace(dag_id="minimal"), "run_id": "scheduled__2026-01-01"}
    with caplog.at_level(logging.WARNING, logger="jobmon_airflow"):
        callbacks["on_failure_callback"](context | {"reason": "task_failure"})
        callbacks["on_success_callback"](context)
    (job,) = jm.show_job("minimal")  # no new job
    assert (job.job_id, job.status) == (old, "OK")  # the old one untouched
    assert jm.show_detail(old) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobmon_airflow"]
    assert len(warnings) == 2
    assert all("cannot be told apart" in w for w in warnings)


def test_merge_callbacks_keeps_everything():
    from jobmon_airflow.callbacks import merge_callbacks

    def a(context): ...
    def b(context): ...
    def c(context): ...

    merged = merge_callbacks(
        {"on_success_callback": a}, {"on_success_callback": [b, c]}, {"on_failure_callback": None}
    )
    assert merged == {"on_success_callback": [a, b, c]}
