"""End to end with a real Airflow: api-server, scheduler and dag-processor (LocalExecutor),
the listener enabled by configuration. Under dag.test() everything runs in one process; here
task callbacks and listener task hooks run in task processes, DAG callbacks in the
dag-processor, and the listener's DAG-run hooks inside the scheduler, which must survive."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from devtools.airflow_env import jobmon_connection

pytestmark = pytest.mark.e2e

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
E2E_DAGS = Path(__file__).parent / "e2e_dags"
DEADLINE = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, condition, deadline: float, procs: dict) -> None:
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(
                    f"airflow {name} exited ({proc.returncode}) while waiting for {what}"
                )
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_real_scheduler_logs_callbacks_and_listener_runs(dsn, jm):
    deadline = time.monotonic() + DEADLINE
    home = Path(tempfile.mkdtemp(prefix="pg-jobmon-e2e-"))
    passed = False
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(E2E_DAGS),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__JOBMON__ENABLE_LISTENER": "True",
        "AIRFLOW_CONN_JOBMON_DEFAULT": jobmon_connection(dsn, jm.schema),
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=120
    )
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    try:
        for name, args in [
            ("api-server", ["api-server", "--port", str(port)]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ]:
            log = open(home / f"{name}.log", "w")  # noqa: SIM115 - closed in finally
            logs.append(log)
            procs[name] = subprocess.Popen(
                [AIRFLOW, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def parsed() -> bool:
            try:
                with sqlite3.connect(home / "airflow.db") as db:
                    found = {r[0] for r in db.execute("SELECT dag_id FROM dag")}
            except sqlite3.Error:
                return False
            return {"e2e_callbacks", "e2e_listener"} <= found

        _wait("the DAGs to be parsed", parsed, deadline, procs)
        for dag_id in ("e2e_callbacks", "e2e_listener"):
            subprocess.run(
                [AIRFLOW, "dags", "trigger", dag_id, "-r", f"e2e_{dag_id}"],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )

        def finished() -> bool:
            jobs = jm.show_job("e2e_callbacks") + jm.show_job("e2e_listener")
            return len(jobs) == 2 and all(j.status for j in jobs)

        _wait("both runs to be logged and closed", finished, deadline, procs)
        callbacks_job = jm.show_job("e2e_callbacks")[0]
        listener_job = jm.show_job("e2e_listener")[0]
        assert callbacks_job.status == "OK"  # closed by the DAG callback, in the dag-processor
        assert callbacks_job.run_key == "airflow:e2e_callbacks/e2e_e2e_callbacks"
        assert [(s.action, s.status) for s in jm.show_detail(callbacks_job.job_id)] == [
            ("one [try 1]", "OK"),
            ("two [try 1]", "OK"),
        ]
        assert listener_job.status == "OK"  # closed by the listener, in the scheduler
        assert [(s.action, s.status) for s in jm.show_detail(listener_job.job_id)] == [
            ("only [try 1]", "OK"),
        ]
        time.sleep(2)
        for name, proc in procs.items():
            assert proc.poll() is None, f"airflow {name} died: see {home / (name + '.log')}"
        scheduler_log = (home / "scheduler.log").read_text()
        assert "UNEXPECTED COMMIT" not in scheduler_log
        passed = True
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for log in logs:
            log.close()
        if passed:  # a failure keeps the home: its logs say what went wrong
            shutil.rmtree(home, ignore_errors=True)
