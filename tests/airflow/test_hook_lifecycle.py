"""The Airflow side closes what it opens (#12.4): the hook owns its logging session, and
the operators and sensors close theirs when a try ends, so no backend is left behind.

Backends are counted in pg_stat_activity by an application_name of this test's own."""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings

import psycopg
import pytest

from devtools.pg import conninfo_params

from ..backends import backend_pids, left_behind
from .conftest import load_dag_module, task_states


@pytest.fixture
def app_name() -> str:
    return f"jobmon-lifecycle-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def lifecycle_conn(dsn, jm, monkeypatch, airflow_db, app_name) -> str:
    """The connection ``lifecycle`` (and ``jobmon_default``), tagged with ``app_name``."""
    p = conninfo_params(dsn)
    conn = json.dumps(
        {
            "conn_type": "jobmon",
            "host": p.get("host"),
            "port": int(str(p["port"])) if p.get("port") else None,
            "login": p.get("user"),
            "password": p.get("password"),
            "schema": p.get("dbname"),
            "extra": {"jobmon_schema": jm.schema, "application_name": app_name},
        }
    )
    monkeypatch.setenv("AIRFLOW_CONN_LIFECYCLE", conn)
    monkeypatch.setenv("AIRFLOW_CONN_JOBMON_DEFAULT", conn)
    return "lifecycle"


class BackendWatch:
    """Samples our backends while something runs: the most at once, and every pid seen."""

    def __init__(self, dsn: str, app_name: str) -> None:
        self.dsn, self.app_name = dsn, app_name
        self.most, self.pids = 0, set[int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                pids = backend_pids(conn, self.app_name)
                self.most = max(self.most, len(pids))
                self.pids.update(pids)
                time.sleep(0.005)

    def __enter__(self) -> BackendWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def watch(dsn, app_name) -> BackendWatch:
    return BackendWatch(dsn, app_name)


# -- the hook -------------------------------------------------------------------------------


def test_close_ends_the_session_and_is_idempotent(lifecycle_conn, admin, app_name):
    from jobmon_airflow.hooks.jobmon import JobmonHook

    hook = JobmonHook(lifecycle_conn)
    hook.close()  # nothing open yet: fine
    assert hook.jobmon.schema_version() > 0
    assert len(backend_pids(admin, app_name)) == 1
    hook.close()
    hook.close()
    assert left_behind(admin, app_name) == []
    assert hook.jobmon.schema_version() > 0  # still usable: a new session
    hook.close()
    assert left_behind(admin, app_name) == []


def test_the_hook_is_a_context_manager_and_leaves_no_open_connection(
    lifecycle_conn, admin, app_name
):
    from jobmon_airflow.hooks.jobmon import JobmonHook

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # psycopg's "deleted while still open"
        with JobmonHook(lifecycle_conn) as hook:
            hook.jobmon.close_job(hook.jobmon.add_job("in a with block"))
            assert len(backend_pids(admin, app_name)) == 1
        assert left_behind(admin, app_name) == []
        del hook
        import gc

        gc.collect()


def test_test_connection_closes_its_session(lifecycle_conn, admin, app_name):
    from jobmon_airflow.hooks.jobmon import JobmonHook

    assert JobmonHook(lifecycle_conn).test_connection()[0]
    assert left_behind(admin, app_name) == []


# -- operators and sensors ------------------------------------------------------------------


def test_a_sensor_poking_50_times_leaves_at_most_one_backend(
    lifecycle_conn, admin, app_name, watch
):
    module = load_dag_module("provider_lifecycle")
    with watch:
        run = module.poke_dag.test()
    assert task_states(run) == {"wait": "skipped"}  # timed out, soft_fail
    assert len(module.POKES) >= 50
    assert watch.most <= 1
    assert len(watch.pids) <= 1  # one session for all the pokes, not one per poke
    assert left_behind(admin, app_name) == []


def test_a_rescheduled_sensor_closes_its_session_each_try(lifecycle_conn, admin, app_name, watch):
    module = load_dag_module("provider_lifecycle")
    with watch:
        run = module.res_dag.test()
    assert task_states(run) == {"wait": "skipped"}
    assert len(module.POKES) >= 2
    assert watch.most <= 1
    assert left_behind(admin, app_name) == []


def test_a_deferred_sensor_closes_its_session_before_deferring(lifecycle_conn, jm, admin, app_name):
    from jobmon_airflow._compat import TaskDeferred
    from jobmon_airflow.sensors.jobmon import JobmonCheckSensor

    for _ in range(3):
        jm.fail_job(jm.add_job("flaky"), 2)  # a warning: not done, not failing: defer
    sensor = JobmonCheckSensor(
        task_id="s", jobmon_conn_id=lifecycle_conn, deferrable=True, timeout=60
    )
    with pytest.raises(TaskDeferred):
        sensor.execute({})
    assert left_behind(admin, app_name) == []
    jm.close_job(jm.add_job("flaky"))  # healthy again: the trigger fires at once
    run = load_dag_module("provider_lifecycle").defer_dag.test()
    assert run.state == "success"
    assert left_behind(admin, app_name) == []


def test_the_operators_leave_no_backend(lifecycle_conn, admin, app_name, dsn):
    provider_check = load_dag_module("provider_check")
    assert provider_check.check_dag.test().state == "success"
    assert left_behind(admin, app_name) == []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.jobmon_sql_target")
    assert load_dag_module("provider_sql").sql_dag.test().state == "success"
    assert left_behind(admin, app_name) == []
    failures = load_dag_module("provider_sql_failures").failures_dag
    assert failures.test(run_conf={"second": "SELECT 1/0"}).state == "failed"
    assert left_behind(admin, app_name) == []
