"""No password anywhere: exceptions (with their tracebacks), reprs, log lines, CLI output.

Every way a password reaches us (a URI, a key=value string, ``PGPASSWORD``, a password that
needs URL-encoding) is combined with every way things go wrong (server unreachable, wrong
database, schema missing) and with success; all that was said is searched for the password.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import make_conninfo

from devtools.pg import conninfo_params
from jobmon_core import Jobmon, JobmonError

JOBMON = str(Path(sys.executable).with_name("jobmon"))
SECRET = "Tr0ub4dor&3 s3cr@t/pw"


def _password_forms(dsn: str, password: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The same target written each way a password can be given: (dsn, extra environment)."""
    p = conninfo_params(dsn)
    host = p.get("host") or "localhost"
    host_part = quote(host, safe="") if host.startswith("/") else host
    uri = (
        f"postgresql://{quote(p.get('user') or 'postgres', safe='')}:{quote(password, safe='')}"
        f"@{host_part}:{p.get('port') or 5432}/{quote(p.get('dbname') or 'postgres', safe='')}"
    )
    return {
        "uri": (uri, {}),
        "key=value": (make_conninfo("", **{**p, "password": password}), {}),
        "PGPASSWORD": (make_conninfo("", **{k: v for k, v in p.items() if k != "password"}),
                       {"PGPASSWORD": password}),
    }  # fmt: skip


def _targets(dsn: str) -> dict[str, str]:
    p = conninfo_params(dsn)
    return {
        "unreachable": make_conninfo("", **{**p, "host": "127.0.0.1", "port": "1"}),
        "no such database": make_conninfo("", **{**p, "dbname": "jobmon_no_such_db"}),
        "schema missing": dsn,
    }


def _everything_said(exc: BaseException | None) -> str:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:  # the whole chain, hidden parts included
        seen.add(id(exc))
        chain += [str(exc), repr(exc), *traceback.format_exception(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(chain)


@pytest.mark.parametrize("target", ["unreachable", "no such database", "schema missing"])
@pytest.mark.parametrize("form", ["uri", "key=value", "PGPASSWORD"])
def test_no_password_in_errors_reprs_or_logs(dsn, monkeypatch, caplog, capfd, form, target):
    target_dsn = _targets(dsn)[target]
    password = conninfo_params(dsn).get("password") or SECRET  # PG 15 checks it; embedded trusts
    given, env = _password_forms(target_dsn, password)[form]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    said = []
    with caplog.at_level(logging.DEBUG):
        jm = Jobmon(given, schema="jobmon_absent_schema", connect_timeout=2)
        said += [repr(jm), str(jm), repr(jm._connection), jm.target.display]
        for call in (
            lambda: jm.add_job("secret test"),
            lambda: jm.check_job_status(),
            lambda: jm.show_job("x"),
            lambda: jm.install() if target != "schema missing" else jm.add_step(1, "x"),
        ):
            with pytest.raises(JobmonError) as caught:
                call()
            said.append(_everything_said(caught.value))
        jm.close()
    out, err = capfd.readouterr()
    said += [caplog.text, out, err]
    everything = "\n".join(said)
    assert password not in everything
    assert quote(password, safe="") not in everything
    assert "JobmonError" in everything or "Error" in everything  # something was said at all


@pytest.mark.parametrize("target", ["unreachable", "no such database", "schema missing", "ok"])
@pytest.mark.parametrize("form", ["uri", "key=value", "PGPASSWORD"])
def test_no_password_in_cli_output(dsn, jm, form, target):
    target_dsn = dsn if target == "ok" else _targets(dsn)[target]
    password = conninfo_params(dsn).get("password") or SECRET
    given, env = _password_forms(target_dsn, password)[form]
    schema = jm.schema if target == "ok" else "jobmon_absent_schema"
    everything = []
    for args in (["check"], ["check", "--format", "json"], ["jobs"], ["steps", "1"],
                 ["config", "list"], ["version"], ["check", "--timeout", "0.001"]):  # fmt: skip
        run = subprocess.run(
            [JOBMON, "--dsn", given, "--schema", schema, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
            check=False,
        )
        everything += [run.stdout, run.stderr]
        assert "Traceback" not in run.stderr
    text = "\n".join(everything)
    assert password not in text
    assert quote(password, safe="") not in text
