"""The listener's DAG-run hooks inside a real scheduler, with the jobmon connection stored
each way a user stores one (issue #13): in Airflow's metadata database (``airflow
connections add``), in a secrets backend, and (tests/airflow/test_scheduler_e2e.py) in an
``AIRFLOW_CONN_...`` environment variable.

A lookup that reaches the metadata database must not touch the scheduler's own SQLAlchemy
session: it used to commit, roll back and close it in the middle of the scheduling loop,
detaching the DagRun being scheduled, and the scheduler died.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import pg
from devtools.airflow_env import jobmon_connection
from jobmon_core import Jobmon

from ..backends import backend_pids
from .real_airflow import real_airflow

pytestmark = pytest.mark.e2e

E2E_DAGS = Path(__file__).parent / "e2e_dags"


def connection(dsn: str, schema: str, application_name: str) -> dict[str, Any]:
    """The jobmon connection as a JSON object, its logging sessions named ``application_name``
    (so a test can count them in pg_stat_activity)."""
    conn = json.loads(jobmon_connection(dsn, schema))
    conn["extra"]["application_name"] = application_name
    return conn


def closed_runs(jm: Jobmon, run_id: str) -> dict[str, str | None]:
    """The status of this run's job of each listener DAG (None: still open)."""
    found = {}
    for dag_id in ("e2e_listener", "e2e_listener_fails"):
        for job in jm.show_job(dag_id):
            if (job.run_key or "").startswith(f"airflow:{dag_id}/{run_id}"):
                found[dag_id] = job.status
    return found


@pytest.fixture
def metadata_dsn(pg_server: pg.Server) -> Iterator[str]:
    """An empty database for Airflow's metadata, on the test server: PostgreSQL, as the
    schedulers of the issue ran with."""
    with pg.fresh_database(pg_server, prefix="airflow_meta") as database_dsn:
        yield database_dsn


def test_the_scheduler_survives_a_connection_in_the_database_then_in_a_secrets_backend(
    dsn, jm, admin, tmp_path, metadata_dsn
):
    secrets_file = tmp_path / "connections.json"
    secrets_file.write_text("{}")
    env = {
        "AIRFLOW__JOBMON__ENABLE_LISTENER": "True",
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
            {"connections_file_path": str(secrets_file)}
        ),
    }
    in_db = connection(dsn, jm.schema, "jobmon-in-db")
    add = ["connections", "add", "jobmon_default", "--conn-json", json.dumps(in_db)]
    with real_airflow(E2E_DAGS, env, setup=[add], metadata_dsn=metadata_dsn) as af:
        af.wait_parsed("e2e_listener", "e2e_listener_fails")

        # 1. Only in the metadata database: the DAG-run hooks look it up from the scheduler.
        af.trigger_all([("e2e_listener", "in_db"), ("e2e_listener_fails", "in_db")])
        af.wait(
            "the runs to be closed",
            lambda: all(
                closed_runs(jm, "in_db").get(d) for d in ("e2e_listener", "e2e_listener_fails")
            ),
        )
        assert closed_runs(jm, "in_db") == {"e2e_listener": "OK", "e2e_listener_fails": "CRITICAL"}

        # 2. Moved to the secrets backend, edited (another application_name): later runs are
        # still scheduled and logged, and the scheduler closes its old logging session.
        af.airflow("connections", "delete", "jobmon_default")
        in_file = connection(dsn, jm.schema, "jobmon-in-file")
        in_file["extra"] = json.dumps(in_file["extra"])
        secrets_file.write_text(json.dumps({"jobmon_default": in_file}))
        af.trigger_all([("e2e_listener", "in_file"), ("e2e_listener_fails", "in_file")])
        af.wait(
            "the later runs to be closed",
            lambda: all(
                closed_runs(jm, "in_file").get(d) for d in ("e2e_listener", "e2e_listener_fails")
            ),
        )
        assert closed_runs(jm, "in_file") == {
            "e2e_listener": "OK",
            "e2e_listener_fails": "CRITICAL",
        }
        af.wait(
            "the edited connection's old session to close",
            lambda: not backend_pids(admin, "jobmon-in-db"),
            timeout=20,
        )
        af.assert_alive()
        scheduler_log = af.log("scheduler")
        for bad in ("DetachedInstanceError", "UNEXPECTED COMMIT", "could not log", "isn't defined"):
            assert bad not in scheduler_log
