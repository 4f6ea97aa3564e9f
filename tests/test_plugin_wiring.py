"""Plugins wired into the writer, the check and `jobmon check --notify`, on a real database
(the plugin machinery itself is tested without one in test_plugins.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobmon_core import Alert, Jobmon
from jobmon_core.cli import main
from jobmon_core.plugins import (
    hookimpl,
    new_plugin_manager,
)

from .test_plugins import Exploder

OK_ROW = Alert(1, "OK", None, "All jobs run successfully")


class Recorder:
    """A plugin that writes down every hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def jobmon_job_started(self, job_id, job_name, schema):
        self.calls.append(("started", {"job_id": job_id, "job_name": job_name}))

    @hookimpl
    def jobmon_step_finished(self, job_id, step_id, status, message):
        self.calls.append(("step", {"job_id": job_id, "status": status, "message": message}))

    @hookimpl
    def jobmon_job_finished(self, job_id, status, alert_code):
        self.calls.append(("finished", {"status": status, "alert_code": alert_code}))

    @hookimpl
    def jobmon_alerts_found(self, alerts, changes):
        self.calls.append(("alerts", {"alerts": alerts, "changes": changes}))


@pytest.fixture
def recorded(dsn, jm) -> tuple[Jobmon, Recorder]:
    manager = new_plugin_manager(load_entry_points=False)
    recorder = Recorder()
    manager.register(recorder)
    return Jobmon(dsn, schema=jm.schema, plugins=manager), recorder


def test_the_writer_tells_plugins_about_jobs_and_steps(recorded):
    jm, recorder = recorded
    with jm.job("hooked") as job, job.step("s") as step:
        step.message = "fine"
    failed = jm.add_job("second")
    jm.fail_job(failed, 2)
    cancelled = jm.add_job("third")
    jm.cancel_job(cancelled)
    assert [(kind, args) for kind, args in recorder.calls] == [
        ("started", {"job_id": job.job_id, "job_name": "hooked"}),
        ("step", {"job_id": job.job_id, "status": "OK", "message": "fine"}),
        ("finished", {"status": "OK", "alert_code": 1}),
        ("started", {"job_id": failed, "job_name": "second"}),
        ("finished", {"status": "WARNING", "alert_code": 2}),
        ("started", {"job_id": cancelled, "job_name": "third"}),
        ("finished", {"status": "CRITICAL", "alert_code": 3}),
    ]


@pytest.mark.parametrize("buffered", [False, True], ids=["durable", "buffered"])
def test_step_finished_names_the_steps_job(dsn, jm, buffered):
    """The hook always gets the job_id, also for a step updated by id alone (an older step
    of another job, as a caller holding only step ids does)."""
    manager = new_plugin_manager(load_entry_points=False)
    recorder = Recorder()
    manager.register(recorder)
    first = jm.add_job("first")
    old_step = jm.add_step(first, "older step")
    with Jobmon(dsn, schema=jm.schema, plugins=manager, buffered=buffered) as hooked:
        second = hooked.add_job("second")
        hooked.update_step(hooked.add_step(second, "new step"), "OK", None)
        hooked.update_step(old_step, "WARNING", "late")
    steps = [args for kind, args in recorder.calls if kind == "step"]
    assert steps == [
        {"job_id": second, "status": "OK", "message": None},
        {"job_id": first, "status": "WARNING", "message": "late"},
    ]


def test_checks_report_flips_only(recorded):
    jm, recorder = recorded
    assert jm.check_job_status() == [OK_ROW]
    for _ in range(3):
        jm.fail_job(jm.add_job("broken"))
    jm.check_job_status()
    jm.check_job_status()
    jm.close_job(jm.add_job("broken"))
    jm.check_job_status()
    changes = [args["changes"] for kind, args in recorder.calls if kind == "alerts"]
    assert changes[0] == []
    assert [(c.job_name, c.previous_code, c.current_code) for c in changes[1]] == [("BROKEN", 1, 3)]
    assert changes[1][0].alert.alert_text == "3 consecutive CRITICAL runs"
    assert changes[2] == []
    assert [(c.job_name, c.current_code, c.recovered, c.alert) for c in changes[3]] == [
        ("BROKEN", 1, True, None)
    ]


def test_a_failing_plugin_is_reported_and_breaks_nothing(dsn, jm, caplog):
    manager = new_plugin_manager(load_entry_points=False)
    recorder = Recorder()
    manager.register(Exploder(), "exploder")
    manager.register(recorder)
    hooked = Jobmon(dsn, schema=jm.schema, plugins=manager)
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        job_id = hooked.add_job("still logged")
        for _ in range(3):
            hooked.fail_job(hooked.add_job("broken"))
        hooked.check_job_status()
        hooked.check_job_status()
    assert job_id
    assert "plugin exploder failed in jobmon_job_started: RuntimeError: plugin bug" in caplog.text
    # the other plugin was still called, and the undelivered flip is reported again
    flips = [a["changes"] for k, a in recorder.calls if k == "alerts"]
    assert [len(f) for f in flips] == [1, 1]


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.server.headers.append(dict(self.headers))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.bodies = []  # type: ignore[attr-defined]
    server.headers = []  # type: ignore[attr-defined]
    server.status = 204  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_port}/hook"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def notify_args(dsn, jm, webhook, state) -> list[str]:
    """`jobmon check --notify` posting to the test webhook, its state in ``state``."""
    args = ["--dsn", dsn, "--schema", jm.schema, "check", "--notify"]
    return [*args, "--webhook-url", webhook.url, "--state-file", str(state)]


def test_check_notify_end_to_end(dsn, jm, webhook, tmp_path, capsys):
    state = tmp_path / "state.json"
    args = notify_args(dsn, jm, webhook, state)
    assert main(args) == 0
    assert webhook.bodies == []
    for _ in range(3):
        jm.fail_job(jm.add_job("broken"))
    assert main(args) == 2
    assert main(args) == 2  # no change: no second POST
    assert [b["changes"][0]["current_code"] for b in webhook.bodies] == [3]
    jm.close_job(jm.add_job("broken"))
    assert main(args) == 0
    assert [b["changes"][0]["current_code"] for b in webhook.bodies] == [3, 1]
    assert json.loads(state.read_text()) == {}
    capsys.readouterr()


def test_check_notify_with_the_webhook_down_still_checks_and_retries(
    dsn, jm, webhook, tmp_path, caplog
):
    state = tmp_path / "state.json"
    args = notify_args(dsn, jm, webhook, state)
    for _ in range(3):
        jm.fail_job(jm.add_job("broken"))
    webhook.status = 503
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        assert main(args) == 2
    assert "answered HTTP 503" in caplog.text
    webhook.status = 204
    assert main(args) == 2  # the flip is delivered now
    assert len(webhook.bodies) == 2
    assert webhook.bodies[1]["changes"][0]["current_code"] == 3


def test_check_notify_needs_a_notifier(dsn, jm, capsys, monkeypatch):
    monkeypatch.delenv("JOBMON_WEBHOOK_URL", raising=False)
    assert main(["--dsn", dsn, "--schema", jm.schema, "check", "--notify"]) == 3
    assert capsys.readouterr()[0].startswith("JOBMON UNKNOWN - --notify needs --webhook-url")


def test_a_corrupt_state_file_is_unknown(dsn, jm, webhook, tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    code = main(notify_args(dsn, jm, webhook, state))
    assert code == 3
    assert "cannot read the --notify state file" in capsys.readouterr()[0]


def test_configure_then_check_fires_missing_flip(recorded):
    jm, recorder = recorded
    jm.configure_check("nightly", warn=timedelta(hours=1), error=timedelta(hours=2))
    jm.check_job_status()
    (flip,) = next(a["changes"] for k, a in recorder.calls if k == "alerts")
    assert (flip.job_name, flip.current_code, flip.alert.alert_status) == ("NIGHTLY", 3, "MISSING")


# -- --notify keeps its state in the schema, shared with every checker --------------------------


def broken(jm: Jobmon) -> None:
    for _ in range(3):
        jm.fail_job(jm.add_job("broken"))


def test_notify_remembers_across_runs_and_timeouts_in_the_schema(
    dsn, jm, webhook, tmp_path, monkeypatch, capsys
):
    """Each run is a new process; the state was a file named after a repr that held the
    time-out, so ``-t 5`` after ``-t 10`` notified the same problem again."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    base = ["--dsn", dsn, "--schema", jm.schema, "check", "--notify", "--webhook-url", webhook.url]
    broken(jm)
    assert main([*base, "-t", "10"]) == 2
    assert main([*base, "-t", "5"]) == 2  # another time-out: the same state
    assert main([*base, "--timeout", "7", "--no-prepare"]) == 2
    assert [[c["current_code"] for c in b["changes"]] for b in webhook.bodies] == [[3]]
    assert list(tmp_path.iterdir()) == []  # no state file anywhere
    jm.close_job(jm.add_job("broken"))
    assert main(base) == 0
    assert [b["changes"][0]["current_code"] for b in webhook.bodies] == [3, 1]
    capsys.readouterr()


def test_notify_and_an_airflow_like_check_share_one_state(dsn, jm, webhook, capsys):
    from jobmon_core.notifiers.webhook import WebhookNotifier

    broken(jm)
    manager = new_plugin_manager(load_entry_points=False)
    manager.register(WebhookNotifier(webhook.url))
    other = Jobmon(dsn, schema=jm.schema, plugins=manager)
    other.check_job_status(timedelta(days=1), shared_state=True)
    other.close()
    args = ["--dsn", dsn, "--schema", jm.schema, "check", "--notify", "--webhook-url", webhook.url]
    assert main(args) == 2
    assert len(webhook.bodies) == 1
    capsys.readouterr()


def test_the_real_check_process_with_notify(dsn, jm, webhook, rows):
    from .test_cli import JOBMON

    broken(jm)
    argv = [JOBMON, "check", "--notify", "--webhook-url", webhook.url, "--dsn", dsn,
            "--schema", jm.schema]  # fmt: skip
    for _ in range(2):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stdout + done.stderr
    assert len(webhook.bodies) == 1
    assert [(r["job_name"], r["alert_code"]) for r in rows("job_alert_state")] == [("BROKEN", 3)]
