"""No password in an Airflow task log: callbacks, the check operator and the hook, with a
connection that carries a password and extras, both when the database is away and when the
password is wrong. Everything printed, logged or written under AIRFLOW_HOME is searched."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from .conftest import load_dag_module

SECRET = "Af-S3cret pw/with:odd@chars"


def _connection(dsn: str, schema: str, *, reachable: bool) -> str:
    p = conninfo_to_dict(dsn)
    return json.dumps(
        {
            "conn_type": "jobmon",
            "host": p.get("host") if reachable else "127.0.0.1",
            "port": int(p.get("port") or 5432) if reachable else 1,
            "login": p.get("user") or "postgres",
            "password": SECRET,  # wrong for PG 15 (password auth); the embedded server trusts
            "schema": "jobmon_no_such_db",  # so that even the trusting server refuses
            "extra": {
                "jobmon_schema": schema,
                "connect_timeout": 2,
                "sslmode": "disable",
                "application_name": "secret-test",
            },
        }
    )


def _everything_under(home: str) -> str:
    texts = []
    for path in Path(home).rglob("*"):
        if path.is_file() and path.suffix in ("", ".log", ".json", ".txt"):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


@pytest.mark.parametrize("reachable", [False, True], ids=["unreachable", "refused-login"])
def test_no_password_in_task_logs(dsn, jm, monkeypatch, airflow_db, caplog, capfd, reachable):
    from jobmon_airflow import runlog
    from jobmon_airflow.hooks.jobmon import JobmonHook

    monkeypatch.setattr(runlog, "_jobmons", {})
    monkeypatch.setattr(runlog, "_down_until", {})
    monkeypatch.setenv(
        "AIRFLOW_CONN_JOBMON_DEFAULT", _connection(dsn, jm.schema, reachable=reachable)
    )
    callbacks = load_dag_module("callbacks_dag")
    checks = load_dag_module("provider_check")
    said = []
    with caplog.at_level(logging.DEBUG):
        assert callbacks.callbacks_dag.test(run_conf={"fail": False}).state == "success"
        assert checks.check_dag.test().state == "failed"  # the check cannot run: fails clearly
        hook = JobmonHook()
        ok, message = hook.test_connection()
        assert not ok
        said += [message, repr(hook), repr(hook.get_jobmon())]
    out, err = capfd.readouterr()
    said += [caplog.text, out, err, _everything_under(os.environ["AIRFLOW_HOME"])]
    everything = "\n".join(said)
    assert "jobmon database" in everything  # the failure was reported...
    assert SECRET not in everything  # ...without the password
    assert quote(SECRET, safe="") not in everything
