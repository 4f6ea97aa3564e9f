"""``jobmon metrics`` and ``jobmon web``: the text for node_exporter, the token rule, clear
errors (a role the login cannot use, the web extra missing), and a core that never needs
the web extra."""

from __future__ import annotations

import subprocess
import sys

from jobmon_core.cli import main

from .conftest import failed_configured_run

BLOCK_WEB = """
import importlib.abc, sys
class NoWeb(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("fastapi", "starlette", "uvicorn", "jinja2", "prometheus_client"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, NoWeb())
"""


def run_without_web(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_WEB + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_metrics_prints_the_exposition_text(dsn, jm, monitor_role, capsys):
    failed_configured_run(jm)
    code = main(["metrics", "--dsn", dsn, "--schema", jm.schema, "--role", monitor_role])
    out = capsys.readouterr().out
    assert code == 0
    assert "jobmon_up 1.0" in out
    assert 'jobmon_check_alert_code{alert_status="FAILED_RUN",job_name="NIGHTLY LOAD"} 3.0' in out
    assert out.endswith("\n")
    assert "jobmon_job_last_step_duration_seconds" not in out  # opt-in
    argv = ["metrics", "--dsn", dsn, "--schema", jm.schema, "--role", monitor_role]
    assert main([*argv, "--step-metrics"]) == 0
    out = capsys.readouterr().out
    assert 'jobmon_job_last_step_duration_seconds{job_name="NIGHTLY LOAD",step="copy rows"}' in out


def test_metrics_of_an_unreachable_database_still_print_jobmon_up_0_and_exit_1(capsys):
    dsn = "postgresql://u:topsecret@127.0.0.1:1/x?connect_timeout=1"
    code = main(["metrics", "--dsn", dsn])
    captured = capsys.readouterr()
    assert code == 1
    assert "jobmon_up 0.0" in captured.out
    assert "topsecret" not in captured.out + captured.err


def test_web_refuses_to_listen_beyond_loopback_without_a_token(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("JOBMON_WEB_TOKEN", raising=False)
    assert main(["web", "--host", "0.0.0.0"]) == 2
    said = capsys.readouterr().err
    assert "listening on 0.0.0.0 would show the job log to anyone" in said
    assert "JOBMON_WEB_TOKEN" in said
    empty = tmp_path / "token"
    empty.write_text("\n")
    assert main(["web", "--host", "0.0.0.0", "--token-file", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err


def test_web_beyond_loopback_needs_a_token_of_16_characters(dsn, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("JOBMON_WEB_TOKEN", "short-token")  # 11 characters
    assert main(["web", "--host", "0.0.0.0"]) == 2
    said = capsys.readouterr().err
    assert "needs a token of at least 16 characters, this one has 11" in said
    assert "short-token" not in said
    token_file = tmp_path / "token"
    token_file.write_text("x" * 15 + "\n")
    assert main(["web", "--host", "::", "--token-file", str(token_file)]) == 2
    assert "at least 16 characters, this one has 15" in capsys.readouterr().err
    # on loopback a short token is the user's choice; the role check fails next, not the token
    code = main(["web", "--dsn", dsn, "--role", "no_such_monitor_role"])
    assert code == 1
    assert "at least 16" not in capsys.readouterr().err


def test_web_says_why_it_cannot_read_before_serving(dsn, jm, capsys):
    code = main(["web", "--dsn", dsn, "--schema", jm.schema, "--role", "no_such_monitor_role"])
    assert code == 1
    said = capsys.readouterr().err
    assert "runs as the monitor role 'no_such_monitor_role'" in said
    assert "jobmon install --create-roles" in said


def test_without_the_web_extra_the_commands_say_how_to_get_it(dsn):
    for command in ("web", "metrics"):
        done = run_without_web(
            f"from jobmon_core.cli import main; sys.exit(main([{command!r}, '--dsn', {dsn!r}]))"
        )
        assert done.returncode == 1, done.stderr
        assert "pip install 'pg-jobmon[web]'" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_core_and_its_cli_import_without_the_web_extra(dsn, jm):
    done = run_without_web(
        f"""
import jobmon_core, jobmon_core.cli
from jobmon_core import Jobmon
jm = Jobmon({dsn!r}, schema={jm.schema!r})
jm.close_job(jm.add_job("no web here"))
assert not any(m.split(".")[0] in ("fastapi", "prometheus_client") for m in sys.modules)
sys.exit(jobmon_core.cli.main(["--dsn", {dsn!r}, "--schema", {jm.schema!r}, "check"]))
"""
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("JOBMON OK")
