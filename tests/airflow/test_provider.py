"""The Airflow provider, run for real with dag.test(): hook, check operator, sensor, SQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devtools.airflow_env import jobmon_connection
from jobmon_core import Jobmon

from .conftest import load_dag_module, task_states

SECRET = "Airflow-S3cret-pw"


@pytest.fixture(scope="module")
def check_dags():
    return load_dag_module("provider_check")


def fail_times(jm, name: str, times: int, level: int = 3) -> None:
    for _ in range(times):
        jm.fail_job(jm.add_job(name), level)


# -- registration ---------------------------------------------------------------------------


def test_the_provider_is_registered_with_airflow(airflow_db):
    from airflow.providers_manager import ProvidersManager

    try:  # Airflow 3.2+: the task SDK has its own registry of hooks
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:  # Airflow 3.1
        ProvidersManagerTaskRuntime = ProvidersManager

    assert "pg-jobmon" in ProvidersManager().providers
    hook = ProvidersManagerTaskRuntime().hooks["jobmon"]
    assert hook.hook_class_name == "jobmon_airflow.hooks.jobmon.JobmonHook"
    assert hook.connection_id_attribute_name == "jobmon_conn_id"


def test_airflow_cli_lists_the_provider_and_the_connection_type(airflow_db):
    airflow = str(__import__("pathlib").Path(sys.executable).with_name("airflow"))
    listed = subprocess.run(
        [airflow, "providers", "list"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "pg-jobmon" in listed.stdout
    hooks = subprocess.run(
        [airflow, "providers", "hooks"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "jobmon_airflow.hooks.jobmon.JobmonHook" in hooks.stdout


def test_airflow_connections_test_needs_test_connection_enabled(jobmon_conn):
    """As the README says: Airflow disables connection tests unless told otherwise."""
    import os

    airflow = str(__import__("pathlib").Path(sys.executable).with_name("airflow"))
    command = [airflow, "connections", "test", jobmon_conn]
    env = {**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Disabled"}
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 1
    assert "Testing connections is disabled" in refused.stdout
    env["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
    tested = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Connection success!" in tested.stdout


# -- the hook -------------------------------------------------------------------------------


@pytest.mark.parametrize("conn_type", ["jobmon", "postgres"])
def test_the_hook_reads_json_connections_of_both_types(dsn, jm, monkeypatch, airflow_db, conn_type):
    from jobmon_airflow.hooks.jobmon import JobmonHook

    monkeypatch.setenv("AIRFLOW_CONN_MINE", jobmon_connection(dsn, jm.schema, conn_type))
    hook = JobmonHook("mine")
    assert hook.test_connection() == (
        True,
        f"Connection successfully tested: jobmon schema version {jm.schema_version()}",
    )
    job = hook.jobmon.add_job("through the hook")  # the Jobmon, for custom operators
    assert hook.get_jobmon().show_job("through the hook")[0].job_id == job
    hook.close()


def test_the_old_hook_pass_through_still_works_but_is_deprecated(jobmon_conn, jm):
    from jobmon_airflow._compat import AirflowProviderDeprecationWarning
    from jobmon_airflow.hooks.jobmon import JobmonHook

    with JobmonHook() as hook:
        assert isinstance(hook.jobmon, Jobmon)  # typed: editors and type checkers see it
        with pytest.warns(AirflowProviderDeprecationWarning, match=r"use hook\.jobmon\.add_job"):
            job = hook.add_job("the old way")
        assert jm.show_job("the old way")[0].job_id == job
        with pytest.raises(AttributeError):
            hook.no_such_method  # noqa: B018


def test_the_hook_reads_uri_connections(dsn, jm, monkeypatch, airflow_db):
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    from jobmon_airflow.hooks.jobmon import JobmonHook

    p = conninfo_to_dict(dsn)
    host = p["host"]
    if host.startswith("/"):
        # a Unix socket directory is the URL-encoded host
        socket_dir = quote(host, safe="")
        uri = f"postgresql://{p['user']}@{socket_dir}/{p['dbname']}?jobmon_schema={jm.schema}"
    else:
        uri = (
            f"postgresql://{p['user']}:{p.get('password', '')}@{host}:{p.get('port', 5432)}"
            f"/{p['dbname']}?jobmon_schema={jm.schema}&connect_timeout=4"
        )
    monkeypatch.setenv("AIRFLOW_CONN_URI_CONN", uri)
    ok, message = JobmonHook("uri_conn").test_connection()
    assert ok, message


def test_the_hook_says_when_the_schema_is_missing(dsn, jm, monkeypatch, airflow_db):
    from jobmon_airflow.hooks.jobmon import JobmonHook

    monkeypatch.setenv("AIRFLOW_CONN_NO_SCHEMA", jobmon_connection(dsn, "not_installed"))
    ok, message = JobmonHook("no_schema").test_connection()
    assert not ok
    assert "run `jobmon install`" in message


def test_unreachable_and_missing_connections_are_clear_and_secret(monkeypatch, airflow_db, caplog):
    import json

    from jobmon_airflow.hooks.jobmon import JobmonHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_DOWN",
        json.dumps(
            {
                "conn_type": "jobmon",
                "host": "127.0.0.1",
                "port": 1,
                "login": "u",
                "password": SECRET,
                "schema": "db",
            }
        ),
    )
    ok, message = JobmonHook("down").test_connection()
    assert not ok
    assert "cannot connect to the jobmon database" in message
    assert SECRET not in message + caplog.text
    ok, message = JobmonHook("no_such_connection").test_connection()
    assert not ok
    assert "no_such_connection" in message


def test_other_connection_types_are_refused(monkeypatch, airflow_db):
    import json

    from jobmon_airflow.hooks.jobmon import JobmonHook

    monkeypatch.setenv("AIRFLOW_CONN_HTTPISH", json.dumps({"conn_type": "http", "host": "x"}))
    ok, message = JobmonHook("httpish").test_connection()
    assert not ok
    assert "needs a 'jobmon' or 'postgres' connection" in message


# -- JobmonCheckOperator --------------------------------------------------------------------


def test_the_monitoring_dag_passes_on_a_healthy_log(jobmon_conn, check_dags):
    run = check_dags.check_dag.test()
    assert run.state == "success"


def test_the_monitoring_dag_fails_on_critical_without_retries(jobmon_conn, jm, check_dags):
    fail_times(jm, "broken", 3)
    run = check_dags.check_dag.test(run_conf={"history": "3 days"})
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.try_number == 1


def test_warnings_pass_unless_fail_level_is_2(jobmon_conn, jm, check_dags):
    fail_times(jm, "shaky", 3, level=2)
    assert check_dags.check_dag.test().state == "success"
    assert check_dags.warn_dag.test().state == "failed"


def test_custom_codes_fail_the_monitoring_dag(jobmon_conn, jm, rows, check_dags):
    rows.execute("INSERT INTO job_status_text VALUES (4, 'PAGE')")
    fail_times(jm, "pager", 3, level=4)
    assert check_dags.check_dag.test().state == "failed"


# -- JobmonCheckSensor and JobmonJobRunSensor ----------------------------------------------


def test_the_sensor_succeeds_on_ok_and_fails_at_once_on_critical(jobmon_conn, jm, check_dags):
    assert check_dags.sensor_dag.test().state == "success"
    fail_times(jm, "broken", 3)
    started = time.monotonic()
    assert check_dags.sensor_dag.test().state == "failed"
    assert time.monotonic() - started < 15  # failed at once, not after the 20 s timeout


def _finish_later(jm, seconds: float, *, ok: bool) -> threading.Thread:
    def run() -> None:
        job = jm.add_job("nightly load")
        time.sleep(seconds)
        if ok:
            jm.close_job(job)
        else:
            jm.fail_job(job)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("dag_name", ["job_dag", "res_dag", "defer_dag"])
def test_the_sensor_waits_for_a_job_run_to_succeed(jobmon_conn, dsn, jm, check_dags, dag_name):
    from jobmon_core import Jobmon

    other = Jobmon(dsn, schema=jm.schema)
    since = datetime.now(UTC).isoformat()
    thread = _finish_later(other, 2.0, ok=True)
    run = getattr(check_dags, dag_name).test(run_conf={"since": since})
    thread.join()
    other.close()
    assert run.state == "success", task_states(run)


@pytest.mark.parametrize("dag_name", ["job_dag", "defer_dag"])
def test_the_sensor_fails_when_the_job_run_fails(jobmon_conn, dsn, jm, check_dags, dag_name):
    from jobmon_core import Jobmon

    other = Jobmon(dsn, schema=jm.schema)
    since = datetime.now(UTC).isoformat()
    thread = _finish_later(other, 1.0, ok=False)
    run = getattr(check_dags, dag_name).test(run_conf={"since": since})
    thread.join()
    other.close()
    assert run.state == "failed"


def test_the_sensor_ignores_runs_before_since(jobmon_conn, jm, check_dags):
    jm.close_job(jm.add_job("nightly load"))
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    time.sleep(1.1)
    thread = _finish_later(jm, 1.0, ok=False)
    run = check_dags.job_dag.test(run_conf={"since": later})
    thread.join()
    assert run.state == "failed"  # the earlier OK run does not count


# -- JobmonSqlOperator ----------------------------------------------------------------------


@pytest.fixture
def sql_dag():
    return load_dag_module("provider_sql").sql_dag


def test_the_sql_operator_logs_each_statement_as_a_step(jobmon_conn, jm, dsn, sql_dag):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.jobmon_sql_target")
    run = sql_dag.test()
    assert run.state == "success"
    (job,) = jm.show_job("jobmon_test_sql.load")
    assert job.status == "OK"
    steps = jm.show_detail(job.job_id)
    assert [(s.status, s.message) for s in steps] == [
        ("OK", "Rows affected: 0"),
        ("OK", "Rows affected: 2"),
        ("OK", "Rows affected: 2"),
    ]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT v FROM public.jobmon_sql_target").fetchall() == [("y",)] * 2


def test_a_failing_statement_rolls_back_and_fails_the_task(jobmon_conn, jm, dsn, sql_dag):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.jobmon_sql_target")
    run = sql_dag.test(
        run_conf={"value": "z", "last_statement": "UPDATE public.jobmon_sql_target SET nope = 1"}
    )
    assert run.state == "failed"
    (job,) = jm.show_job("jobmon_test_sql.load")
    assert job.status == "CRITICAL"
    steps = jm.show_detail(job.job_id)
    assert steps[-1].status == "CRITICAL"
    assert steps[-1].message.startswith('ERROR: column "nope"')
    with psycopg.connect(dsn) as conn:  # the whole transaction rolled back: no table
        (exists,) = conn.execute("SELECT to_regclass('public.jobmon_sql_target')").fetchone()
    assert exists is None


def test_the_sql_operator_runs_a_templated_sql_file(jobmon_conn, jm, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.jobmon_sql_file")
    run = load_dag_module("provider_sql").sql_file_dag.test()
    assert run.state == "success"
    (job,) = jm.show_job("jobmon_test_sql_file from a file")
    assert [s.message for s in jm.show_detail(job.job_id)] == [
        "Rows affected: 0",
        "Rows affected: 5",
        "Rows affected: 2",
    ]


def test_the_deferrable_sensor_really_defers(jobmon_conn, jm):
    from jobmon_airflow._compat import TaskDeferred
    from jobmon_airflow.sensors.jobmon import JobmonJobRunSensor
    from jobmon_airflow.triggers.jobmon import JobmonCheckTrigger

    jm.add_job("nightly load")  # running: not known yet, so the sensor must defer
    sensor = JobmonJobRunSensor(
        task_id="s",
        job_name="nightly load",
        since=datetime.now(UTC) - timedelta(minutes=1),
        deferrable=True,
        poke_interval=5,
        timeout=60,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, JobmonCheckTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "jobmon_airflow.triggers.jobmon.JobmonCheckTrigger"
    assert kwargs["jobmon_conn_id"] == "jobmon_default"  # an id, never a connection string
    assert deferred.value.method_name == "execute_complete"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, True, 1e300, b"3 days"])
def test_a_bad_history_is_a_clear_error(value):
    from jobmon_core import InvalidArgumentError
    from jobmon_core.check_tasks import as_history

    with pytest.raises(InvalidArgumentError, match="history"):
        as_history(value)


# -- JobmonSqlOperator: every path ends its job (#12.3) -------------------------------------


@pytest.fixture
def failures_dag():
    return load_dag_module("provider_sql_failures").failures_dag


def _ended_job(jm):
    (job,) = jm.show_job("sql failures")
    assert job.end_time is not None, "the job was left open"
    return job, jm.show_detail(job.job_id)


def test_a_failing_commit_fails_the_job_and_the_task(jobmon_conn, jm, failures_dag):
    run = failures_dag.test(
        run_conf={
            "first": "CREATE TEMP TABLE deferred (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)",
            "second": "INSERT INTO deferred VALUES (1), (1)",  # violated only at COMMIT
        }
    )
    assert run.state == "failed"
    job, steps = _ended_job(jm)
    assert job.status == "CRITICAL"
    assert [(s.action, s.status) for s in steps][-1] == ("COMMIT", "CRITICAL")
    assert steps[-1].message.startswith("ERROR: duplicate key value violates unique constraint")


def test_a_dropped_work_connection_fails_the_job_and_the_task(jobmon_conn, jm, failures_dag):
    run = failures_dag.test(run_conf={"first": "SELECT pg_terminate_backend(pg_backend_pid())"})
    assert run.state == "failed"
    job, steps = _ended_job(jm)
    assert job.status == "CRITICAL"
    assert steps[0].status == "CRITICAL"
    assert len(steps) == 1  # the second statement never ran


def test_a_statement_cut_by_the_execution_timeout_fails_the_job(
    jobmon_conn, jm, admin, failures_dag
):
    started = time.monotonic()
    run = failures_dag.test(run_conf={"second": "SELECT pg_sleep(20.5)"})
    assert run.state == "failed"
    assert time.monotonic() - started < 15
    job, steps = _ended_job(jm)
    assert job.status == "CRITICAL"
    assert steps[-1].status == "CRITICAL"
    assert "AirflowTaskTimeout" in steps[-1].message
    # the statement was cancelled in the server too, not left running with its locks
    (running,) = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20.5)'"
        " AND state = 'active'"
    ).fetchone()
    assert running == 0


def test_a_job_that_cannot_be_closed_after_the_commit_does_not_fail_the_task(
    jobmon_conn, jm, admin, failures_dag
):
    """Once the work is committed, a failing close of its job is a warning: failing the task
    would make Airflow's retry run the committed statements again."""
    refuse_close = (
        "DO $do$ BEGIN"
        " CREATE TABLE committed_once (n int);"
        " CREATE FUNCTION refuse_close() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
        "  IF NEW.end_time IS NOT NULL THEN RAISE EXCEPTION 'jobmon refuses to close'; END IF;"
        "  RETURN NEW; END $f$;"
        f" CREATE TRIGGER refuse_close BEFORE UPDATE ON {jm.schema}.job_log"
        "  FOR EACH ROW WHEN (NEW.job_name = 'SQL FAILURES') EXECUTE FUNCTION refuse_close();"
        " END $do$"
    )
    try:
        run = failures_dag.test(
            run_conf={"first": refuse_close, "second": "INSERT INTO committed_once VALUES (1)"}
        )
        assert run.state == "success"
        assert admin.execute("SELECT count(*) FROM committed_once").fetchone() == (1,)
        (job,) = jm.show_job("sql failures")
        assert job.end_time is None  # the close was refused, and only warned about
    finally:
        admin.execute("DROP TABLE IF EXISTS committed_once")
        admin.execute(f"DROP TRIGGER IF EXISTS refuse_close ON {jm.schema}.job_log")
        admin.execute("DROP FUNCTION IF EXISTS refuse_close()")
