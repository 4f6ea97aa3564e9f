"""The jobmon command: a correct Nagios plugin, readable reports, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from jobmon_core.cli import main

JOBMON = str(Path(sys.executable).with_name("jobmon"))
SECRET = "Cli-S3cret-pw"


@pytest.fixture
def cli(dsn, jm, capsys):
    """Run ``jobmon --dsn ... --schema ... ARGS`` in-process; return (exit, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--dsn", dsn, "--schema", jm.schema, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def process(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBMON, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def fail_times(jm, name: str, times: int, level: int = 3) -> None:
    for _ in range(times):
        jm.fail_job(jm.add_job(name), level)


def test_check_ok(cli):
    code, out, err = cli("check")
    assert code == 0
    assert out.startswith(
        "JOBMON OK - All jobs run successfully | 'critical'=0;;;0 'warning'=0;;;0"
    )
    assert "'time'=" in out
    assert err == ""


def test_check_warning(cli, jm):
    fail_times(jm, "shaky", 3, level=2)
    code, out, _ = cli("check")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "JOBMON WARNING - 1 problem: SHAKY: 3 consecutive WARNING runs"
    assert lines[1].split() == ["WARNING", "SHAKY", "FAILED_RUN", "3", "consecutive", "WARNING",
                                "runs", "|", "'critical'=0;;;0", "'warning'=1;;;0",
                                "'problems'=1;;;0", lines[1].split()[-1]]  # fmt: skip


def test_check_critical_lists_every_problem(cli, jm):
    fail_times(jm, "shaky", 3, level=2)
    fail_times(jm, "broken", 3)
    jm.configure_check("nightly", warn=__import__("datetime").timedelta(hours=1),
                       error=__import__("datetime").timedelta(hours=2))  # fmt: skip
    code, out, _ = cli("check")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(
        "JOBMON CRITICAL - 3 problems: BROKEN: 3 consecutive CRITICAL runs; "
    )
    assert [line.split()[0:2] for line in lines[1:]] == [
        ["CRITICAL", "BROKEN"],
        ["CRITICAL", "NIGHTLY"],
        ["WARNING", "SHAKY"],
    ]
    assert "'critical'=2;;;0 'warning'=1;;;0 'problems'=3;;;0" in lines[-1]


def test_custom_codes_are_critical_for_nagios(cli, jm, rows):
    rows.execute("INSERT INTO job_status_text VALUES (4, 'PAGE')")
    fail_times(jm, "pager", 3, level=4)
    code, out, _ = cli("check")
    assert code == 2
    assert out.splitlines()[1].startswith("CRITICAL(4)")


def test_check_json(cli, jm):
    fail_times(jm, "broken", 3)
    code, out, _ = cli("check", "--format", "json", "--history", "2 days")
    assert code == 2
    data = json.loads(out)
    assert data["status"] == "CRITICAL"
    assert data["worst_code"] == 3
    assert data["alerts"] == [
        {"alert_code": 3, "alert_status": "FAILED_RUN", "job_name": "BROKEN",
         "alert_text": "3 consecutive CRITICAL runs"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["check", "--history", "3 fortnights"], "bad arguments"),
        (["check", "--format", "xml"], "bad arguments"),
        (["check", "--timeout", "0"], "bad arguments"),
    ],
)
def test_bad_check_arguments_are_unknown(cli, args, reason):
    code, out, _err = cli(*args)
    assert code == 3
    assert out.startswith(f"JOBMON UNKNOWN - {reason}")


def test_a_window_shorter_than_a_threshold_is_unknown(cli, jm):
    from datetime import timedelta

    jm.configure_check("weekly", warn=timedelta(days=7), error=timedelta(days=8))
    code, out, _ = cli("check", "--history", "1d")
    assert code == 3
    assert out.startswith("JOBMON UNKNOWN - Input argument must be greater than or equal")


def test_a_missing_schema_is_unknown_with_a_hint(dsn, capsys):
    code = main(["--dsn", dsn, "--schema", "nowhere", "check"])
    out, _ = capsys.readouterr()
    assert code == 3
    assert out.startswith("JOBMON UNKNOWN - the jobmon tables are missing")
    assert "jobmon install" in out


def test_an_unreachable_database_is_unknown_as_a_real_process():
    result = process("--dsn", f"postgresql://u:{SECRET}@127.0.0.1:1/db", "check")
    assert result.returncode == 3
    assert result.stdout.startswith("JOBMON UNKNOWN - cannot connect to the jobmon database")
    assert len(result.stdout.splitlines()) == 1
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_times_out_as_unknown_as_a_real_process(dsn, jm):
    with psycopg.connect(dsn) as holder:
        holder.execute(
            psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(jm.schema, "job_check_config")
            )
        )
        result = process("--dsn", dsn, "--schema", jm.schema, "check", "--timeout", "2")
        # the check cancelled its statement: nothing of it is left waiting for the lock
        for _ in range(20):
            waiting = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()
            if waiting == (0,):
                break
            time.sleep(0.05)
        holder.rollback()
    assert waiting == (0,)
    assert result.returncode == 3
    assert result.stdout.strip() == "JOBMON UNKNOWN - check timed out after 2 s"


def test_check_runs_as_a_real_process(dsn, jm):
    result = process("--dsn", dsn, "--schema", jm.schema, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("JOBMON OK - All jobs run successfully |")


def test_dsn_from_the_environment(dsn, jm):
    env = {**os.environ, "JOBMON_DSN": dsn}
    result = subprocess.run(
        [JOBMON, "--schema", jm.schema, "check"], capture_output=True, text=True, env=env,
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0


def test_install_jobs_steps(cli, dsn, schema_name, capsys):
    code = main(["--dsn", dsn, "--schema", schema_name + "_cli", "install"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.startswith(f"installed pg-jobmon in schema '{schema_name}_cli' at version ")
    main(["--dsn", dsn, "--schema", schema_name + "_cli", "install"])
    assert "is already at version" in capsys.readouterr()[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(
                psycopg.sql.Identifier(schema_name + "_cli")
            )
        )


def test_jobs_and_steps_tables(cli, jm):
    with jm.job("nightly load") as job, job.step("copy") as step:
        step.message = "42 rows"
    failing = jm.add_job("other")
    jm.fail_job(failing)
    code, out, _ = cli("jobs")
    assert code == 0
    header, _rule, *body = out.splitlines()
    assert header.split()[:4] == ["job_id", "job_name", "status", "started"]
    assert len(body) == 2
    code, out, _ = cli("jobs", "--name", "nightly load")
    assert "NIGHTLY LOAD" in out
    assert "OTHER" not in out
    code, out, _ = cli("jobs", "--status", "CRITICAL")
    assert "OTHER" in out
    assert "NIGHTLY" not in out
    code, out, _ = cli("jobs", "--like", "^night")
    assert "NIGHTLY LOAD" in out
    code, out, _ = cli("jobs", "--running")
    assert out.strip() == "no runs found"
    code, out, _ = cli("steps", str(job.job_id))
    assert code == 0
    assert "copy" in out
    assert "42 rows" in out
    assert " s " in out  # a readable elapsed time
    code, out, _ = cli("steps", "nightly load")
    assert "copy" in out
    code, out, _ = cli("steps", "999999")
    assert out.strip() == "no steps found"


def test_config_set_list_remove(cli):
    code, out, _ = cli("config", "set", "nightly load", "--warn", "25h", "--error", "2d",
                       "--sensitivity", "1", "--escalate", "3")  # fmt: skip
    assert code == 0
    assert out.strip() == "monitoring NIGHTLY LOAD: warn after 1 d 1 h, error after 2 d"
    code, out, _ = cli("config", "list")
    assert out.splitlines()[2].split() == ["NIGHTLY", "LOAD", "1", "d", "1", "h", "2", "d",
                                           "yes", "1", "3"]  # fmt: skip
    code, out, _ = cli("config", "set", "x", "--warn", "2h", "--error", "1h")
    assert code == 1
    code, out, err = cli("config", "remove", "Nightly Load")
    assert code == 0
    code, out, err = cli("config", "remove", "nightly load")
    assert code == 1
    assert "no monitoring configuration" in err


def test_clear(cli, jm, rows):
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, pid)"
        " SELECT current_user, 'OLD', now() - interval '60 days', 1 FROM generate_series(1, 5)"
    )
    code, out, _ = cli("clear", "--older-than", "30d")
    assert code == 0
    assert out.strip() == "deleted 5 runs older than 30 d (and their steps)"


def test_errors_are_one_line_without_traceback_or_password(capsys):
    code = main(["--dsn", f"postgresql://u:{SECRET}@127.0.0.1:1/db", "jobs"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("jobmon: error: cannot connect to the jobmon database")
    assert len(err.strip().splitlines()) == 1
    assert SECRET not in out + err
    code = main(["jobs", "--limit", "0"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "must be 1 or more" in err
    code = main(["--dsn", f"host=x password={SECRET} oops", "jobs"])
    _, err = capsys.readouterr()
    assert code == 1
    assert SECRET not in err


def test_version(capsys):
    from jobmon_core import __version__

    assert main(["version"]) == 0
    assert capsys.readouterr()[0].strip() == f"pg-jobmon {__version__}"
    result = process("--version")
    assert result.stdout.strip() == f"pg-jobmon {__version__}"
