"""Plugins: the hooks, their isolation, entry points, and the webhook notifier.

No database here: the hooks are called with :class:`Alert` objects directly, and the
webhook posts to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pluggy
import pytest

from jobmon_core import Alert, InvalidArgumentError, JobmonError
from jobmon_core.notifiers.webhook import ENV_VAR, NotifierError, WebhookNotifier, shown_url
from jobmon_core.plugins import (
    PROJECT,
    AlertChange,
    JobmonSpec,
    PluginCaller,
    alert_state,
    diff_alerts,
    get_plugin_manager,
    hookimpl,
    new_plugin_manager,
)

OK_ROW = Alert(1, "OK", None, "All jobs run successfully")
BROKEN = Alert(3, "FAILED_RUN", "A", "3 consecutive CRITICAL runs")
A_WARNED = Alert(2, "FAILED_RUN", "A", "1 WARNING run(s)")
B_LATE = Alert(2, "MISSING", "B", "MISSING - Last run at 2026-01-01 00:00:00+00")


class Recorder:
    """A plugin that writes down every hook call, with only the arguments it declares."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def jobmon_job_started(self, job_id, job_name, schema):
        self.calls.append(("started", {"job_id": job_id, "job_name": job_name, "schema": schema}))

    @hookimpl
    def jobmon_step_finished(self, job_id, step_id, status, message):
        self.calls.append(
            ("step", {"job_id": job_id, "step_id": step_id, "status": status, "message": message})
        )

    @hookimpl
    def jobmon_job_finished(self, job_id, status, alert_code):
        self.calls.append(("finished", {"job_id": job_id, "status": status, "code": alert_code}))

    @hookimpl
    def jobmon_alerts_found(self, alerts, changes, schema):
        self.calls.append(("alerts", {"alerts": alerts, "changes": changes, "schema": schema}))


class Exploder:
    @hookimpl
    def jobmon_job_started(self, job_id):
        raise RuntimeError("plugin bug")

    @hookimpl
    def jobmon_alerts_found(self, alerts):
        raise RuntimeError("notifier down")


def fresh_manager(*plugins: object) -> pluggy.PluginManager:
    manager = new_plugin_manager(load_entry_points=False)
    for plugin in plugins:
        manager.register(plugin, type(plugin).__name__.lower())
    return manager


# -- calling the hooks --------------------------------------------------------------------------


def test_a_plugin_registered_in_code_hears_every_hook():
    recorder = Recorder()
    hooks = PluginCaller(fresh_manager(recorder), "etl_log")
    change = AlertChange("A", 1, 3, BROKEN)
    assert hooks.job_started(7, "nightly load")
    assert hooks.step_finished(70, "OK", "12 rows", job_id=7)
    assert hooks.step_finished(71, "CRITICAL", None, job_id=8)
    assert hooks.job_finished(7, "CRITICAL", 3)
    assert hooks.alerts_found([BROKEN], [change])
    assert recorder.calls == [
        ("started", {"job_id": 7, "job_name": "nightly load", "schema": "etl_log"}),
        ("step", {"job_id": 7, "step_id": 70, "status": "OK", "message": "12 rows"}),
        ("step", {"job_id": 8, "step_id": 71, "status": "CRITICAL", "message": None}),
        ("finished", {"job_id": 7, "status": "CRITICAL", "code": 3}),
        ("alerts", {"alerts": [BROKEN], "changes": [change], "schema": "etl_log"}),
    ]


def test_the_default_manager_delivers_to_plugins_registered_in_code():
    recorder = Recorder()
    manager = get_plugin_manager()
    manager.register(recorder, "test-recorder")
    try:
        PluginCaller(manager, "jobmon").job_finished(1, "OK", 1)
    finally:
        manager.unregister(name="test-recorder")
    assert recorder.calls == [("finished", {"job_id": 1, "status": "OK", "code": 1})]


def test_a_failing_plugin_is_logged_and_the_others_still_hear(caplog):
    before, after = Recorder(), Recorder()
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(JobmonSpec)
    manager.register(before, "before")
    manager.register(Exploder(), "exploder")
    manager.register(after, "after")
    hooks = PluginCaller(manager, "jobmon")
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        assert hooks.job_started(1, "job") is False
        assert hooks.alerts_found([BROKEN], []) is False
        assert hooks.job_finished(1, "OK", 1) is True  # the exploder does not implement it
    assert "plugin exploder failed in jobmon_job_started: RuntimeError: plugin bug" in caplog.text
    assert "plugin exploder failed in jobmon_alerts_found: RuntimeError: notifier down" in (
        caplog.text
    )
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    for recorder in (before, after):
        assert [kind for kind, _ in recorder.calls] == ["started", "alerts", "finished"]


def test_plugins_are_called_in_pluggys_order():
    order: list[str] = []

    class Plugin:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def jobmon_job_started(self):
            order.append(self.name)

    class First:
        @hookimpl(tryfirst=True)
        def jobmon_job_started(self):
            order.append("first")

    manager = fresh_manager()
    manager.register(First(), "first")
    manager.register(Plugin("one"), "one")
    manager.register(Plugin("two"), "two")
    PluginCaller(manager, "jobmon").job_started(1, "job")
    expected = list(order)
    order.clear()
    manager.hook.jobmon_job_started(job_id=1, job_name="job", schema="jobmon")
    assert expected == order == ["first", "two", "one"]


def test_wrappers_are_skipped_with_one_warning(caplog):
    class Wrapper:
        @hookimpl(wrapper=True)
        def jobmon_job_started(self):
            raise AssertionError("never run")
            yield

    recorder = Recorder()
    hooks = PluginCaller(fresh_manager(Wrapper(), recorder), "jobmon")
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        assert hooks.job_started(1, "job")
        assert hooks.job_started(2, "job")
    assert caplog.text.count("plugin wrapper implements jobmon_job_started as a wrapper") == 1
    assert len(recorder.calls) == 2


def test_no_plugin_is_nearly_free():
    hooks = PluginCaller(fresh_manager(), "jobmon")
    started = time.perf_counter()
    for step_id in range(10_000):
        hooks.step_finished(step_id, "OK", None, 1)
    # measured about 2 ms; a writer's round trip to the database is ~100 us per step
    assert time.perf_counter() - started < 0.5


def test_plugin_caller_wants_a_pg_jobmon_manager():
    with pytest.raises(InvalidArgumentError, match="PluginManager"):
        PluginCaller("not a manager", "jobmon")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="pg_jobmon"):
        PluginCaller(pluggy.PluginManager("pytest"), "jobmon")
    bare = pluggy.PluginManager(PROJECT)  # no hookspecs yet: they are added
    recorder = Recorder()
    bare.register(recorder)
    PluginCaller(bare, "jobmon").job_started(3, "bare")
    assert recorder.calls == [("started", {"job_id": 3, "job_name": "bare", "schema": "jobmon"})]

    class Misspelled:
        @hookimpl
        def jobmon_job_started(self, jobid):
            pass

    wrong = pluggy.PluginManager(PROJECT)
    wrong.register(Misspelled())
    with pytest.raises(InvalidArgumentError, match="jobid"):
        PluginCaller(wrong, "jobmon")


# -- the process-wide manager and entry points --------------------------------------------------


def test_the_default_manager_is_created_once():
    managers: list[pluggy.PluginManager] = []
    threads = [
        threading.Thread(target=lambda: managers.append(get_plugin_manager())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert get_plugin_manager() is get_plugin_manager()
    assert all(m is get_plugin_manager() for m in managers)
    assert get_plugin_manager().hook.jobmon_alerts_found.has_spec()


def _distribution(root: Path, name: str, entry_points: str) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pg_jobmon]\n{entry_points}\n")


def test_entry_points_load_and_a_broken_one_is_skipped(tmp_path, monkeypatch, caplog):
    (tmp_path / "jm_good_plugin.py").write_text(
        "from jobmon_core.plugins import hookimpl\n"
        "SEEN = []\n"
        "@hookimpl\n"
        "def jobmon_job_started(job_name):\n"
        "    SEEN.append(job_name)\n"
    )
    (tmp_path / "jm_misspelled_plugin.py").write_text(
        "from jobmon_core.plugins import hookimpl\n"
        "@hookimpl\n"
        "def jobmon_job_started(jobname):\n"
        "    pass\n"
    )
    _distribution(tmp_path, "aaa_broken", "aaa_broken = jm_no_such_module_here")
    _distribution(tmp_path, "jm_good", "good = jm_good_plugin")
    _distribution(tmp_path, "jm_misspelled", "misspelled = jm_misspelled_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "jm_good_plugin", raising=False)  # fresh on a rerun
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        manager = new_plugin_manager()
    assert manager.has_plugin("good")
    assert not manager.has_plugin("aaa_broken")
    assert not manager.has_plugin("misspelled")
    assert "plugin 'aaa_broken' failed to load" in caplog.text
    assert "ModuleNotFoundError" in caplog.text
    assert "plugin 'misspelled' failed to load" in caplog.text
    jm_good_plugin = importlib.import_module("jm_good_plugin")  # made by this test

    PluginCaller(manager, "jobmon").job_started(1, "from an entry point")
    assert jm_good_plugin.SEEN == ["from an entry point"]
    assert not new_plugin_manager(load_entry_points=False).has_plugin("good")


# -- alert states and their changes ------------------------------------------------------------


def test_alert_state_keeps_the_worst_code_per_job():
    assert alert_state([OK_ROW]) == {}
    assert alert_state([]) == {}
    assert alert_state([BROKEN, A_WARNED, B_LATE]) == {"A": 3, "B": 2}
    assert alert_state([A_WARNED, BROKEN]) == {"A": 3}
    custom = Alert(5, "FAILED_RUN", "C", "1 PAGE run(s)")
    assert alert_state([custom]) == {"C": 5}


def test_diff_alerts_new_problem():
    assert diff_alerts({}, [BROKEN, A_WARNED]) == [AlertChange("A", 1, 3, BROKEN)]
    assert diff_alerts({"A": 3}, [BROKEN, B_LATE]) == [AlertChange("B", 1, 2, B_LATE)]


def test_diff_alerts_worse_and_better():
    assert diff_alerts({"A": 2}, [BROKEN]) == [AlertChange("A", 2, 3, BROKEN)]
    assert diff_alerts({"A": 3}, [A_WARNED]) == [AlertChange("A", 3, 2, A_WARNED)]


def test_diff_alerts_recovered():
    changes = diff_alerts({"A": 3, "B": 2}, [OK_ROW])
    assert changes == [AlertChange("A", 3, 1, None), AlertChange("B", 2, 1, None)]
    assert all(c.recovered for c in changes)
    assert diff_alerts({"A": 3, "B": 2}, [B_LATE]) == [AlertChange("A", 3, 1, None)]


def test_diff_alerts_unchanged():
    assert diff_alerts({}, [OK_ROW]) == []
    assert diff_alerts({}, []) == []
    assert diff_alerts({"A": 3}, [BROKEN]) == []
    assert diff_alerts({"A": 3}, [BROKEN, A_WARNED]) == []  # a milder second alert: no change
    state = alert_state([BROKEN, B_LATE])
    assert diff_alerts(state, [BROKEN, B_LATE]) == []


def test_diff_alerts_sorts_by_name_and_keeps_unnamed_problems():
    unnamed = Alert(2, None, None, "something without a job")
    z = Alert(3, "FAILED_RUN", "Z", "3 consecutive CRITICAL runs")
    assert alert_state([unnamed]) == {None: 2}
    assert [c.job_name for c in diff_alerts({"M": 2}, [z, unnamed, BROKEN])] == [
        "A",
        "M",
        "Z",
        None,
    ]


def test_alert_change_as_json():
    assert AlertChange("A", 1, 3, BROKEN).to_dict() == {
        "job_name": "A",
        "previous_code": 1,
        "current_code": 3,
        "alert": BROKEN.to_dict(),
    }
    assert AlertChange("A", 3, 1, None).to_dict()["alert"] is None
    assert not AlertChange("A", 1, 2, A_WARNED).recovered


# -- the webhook --------------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    """Records each request; answers ``server.status`` after ``server.delay`` seconds."""

    def _answer(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        server.requests.append(  # type: ignore[attr-defined]
            (self.command, self.path, dict(self.headers), json.loads(body) if body else None)
        )
        time.sleep(server.delay)  # type: ignore[attr-defined]
        self.send_response(server.status)  # type: ignore[attr-defined]
        if 300 <= server.status < 400:  # type: ignore[attr-defined]
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = _answer

    def log_message(self, *args: object) -> None:
        pass


class Webhook(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str, dict[str, str], object]]
    status = 204
    delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hook"

    @property
    def bodies(self) -> list[object]:
        return [body for _, _, _, body in self.requests]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook(("127.0.0.1", 0), _Hook)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHANGE = [AlertChange("A", 1, 3, BROKEN)]


def test_the_webhook_posts_the_check_as_json(webhook):
    WebhookNotifier(webhook.url).jobmon_alerts_found(
        alerts=[BROKEN, B_LATE], changes=CHANGE, schema="etl_log"
    )
    ((method, path, headers, body),) = webhook.requests
    assert (method, path, headers["Content-Type"]) == ("POST", "/hook", "application/json")
    assert body == {
        "source": "pg-jobmon",
        "schema": "etl_log",
        "worst_code": 3,
        "alerts": [
            {
                "alert_code": 3,
                "alert_status": "FAILED_RUN",
                "job_name": "A",
                "alert_text": "3 consecutive CRITICAL runs",
            },
            B_LATE.to_dict(),
        ],
        "changes": [
            {"job_name": "A", "previous_code": 1, "current_code": 3, "alert": BROKEN.to_dict()}
        ],
    }


def test_the_webhook_posts_recoveries_and_nothing_without_changes(webhook):
    notifier = WebhookNotifier(webhook.url, headers={"X-Token": "t0ken"})
    notifier.jobmon_alerts_found(alerts=[BROKEN], changes=[], schema="jobmon")
    notifier.jobmon_alerts_found(alerts=[OK_ROW], changes=[], schema="jobmon")
    assert webhook.requests == []
    recovered = AlertChange("A", 3, 1, None)
    notifier.jobmon_alerts_found(alerts=[OK_ROW], changes=[recovered], schema="jobmon")
    ((_, _, headers, body),) = webhook.requests
    assert headers["X-Token"] == "t0ken"
    assert body["worst_code"] == 1
    assert body["changes"] == [recovered.to_dict()]


def test_a_refused_webhook_is_a_notifier_error_without_credentials(webhook):
    webhook.status = 500
    secret_url = webhook.url.replace("http://", "http://hook-user:Hook-S3cret@") + "?key=Q-S3cret"
    notifier = WebhookNotifier(secret_url)
    with pytest.raises(NotifierError, match="answered HTTP 500") as caught:
        notifier.jobmon_alerts_found(alerts=[BROKEN], changes=CHANGE, schema="jobmon")
    assert isinstance(caught.value, JobmonError)
    assert f"webhook http://127.0.0.1:{webhook.server_port}/hook answered" in str(caught.value)
    for text in (str(caught.value), repr(notifier)):
        assert "S3cret" not in text
        assert "hook-user" not in text
    ((_, path, headers, _),) = webhook.requests
    assert path == "/hook?key=Q-S3cret"  # the query is sent, just never shown
    assert headers["Authorization"] == "Basic aG9vay11c2VyOkhvb2stUzNjcmV0"


def test_a_redirect_is_not_followed(webhook):
    webhook.status = 302
    with pytest.raises(NotifierError, match="answered HTTP 302"):
        WebhookNotifier(webhook.url).jobmon_alerts_found(alerts=[], changes=CHANGE, schema="s")
    assert [(method, path) for method, path, _, _ in webhook.requests] == [("POST", "/hook")]


def test_an_unreachable_or_slow_webhook_is_a_notifier_error(webhook):
    url = f"http://u:S3cret@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(NotifierError, match="unreachable") as caught:
        WebhookNotifier(url).jobmon_alerts_found(alerts=[], changes=CHANGE, schema="s")
    assert "S3cret" not in str(caught.value)
    webhook.delay = 1.0
    started = time.monotonic()
    with pytest.raises(NotifierError, match="unreachable: timed out"):
        WebhookNotifier(webhook.url, timeout=0.2).jobmon_alerts_found(
            alerts=[], changes=CHANGE, schema="s"
        )
    assert time.monotonic() - started < 1.0


def test_a_failing_webhook_breaks_no_check(webhook, caplog):
    webhook.status = 503
    recorder = Recorder()
    notifier = WebhookNotifier(webhook.url.replace("http://", "http://u:S3cret@"))
    hooks = PluginCaller(fresh_manager(notifier, recorder), "jobmon")
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        assert hooks.alerts_found([BROKEN], CHANGE) is False
    assert "plugin webhooknotifier failed in jobmon_alerts_found: NotifierError" in caplog.text
    assert "answered HTTP 503" in caplog.text
    assert "S3cret" not in caplog.text
    assert [kind for kind, _ in recorder.calls] == ["alerts"]
    webhook.status = 200
    assert hooks.alerts_found([BROKEN], CHANGE) is True
    assert len(webhook.requests) == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "file:///etc/passwd",
        "not a url",
        "http://",
        "https:///path-only",
        "http://host:port/x",
        "http://[::1/x",
        "http://host/a b",
        "",
        5,
        None,
    ],
)
def test_webhook_urls_are_checked(url):
    with pytest.raises(InvalidArgumentError):
        WebhookNotifier(url)


def test_webhook_messages_never_show_the_password():
    with pytest.raises(InvalidArgumentError) as caught:
        WebhookNotifier("ftp://me:S3cret@host/x")
    assert "S3cret" not in str(caught.value)
    assert "ftp://host/x" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout": 0}, "positive"),
        ({"timeout": -1.5}, "positive"),
        ({"timeout": float("nan")}, "positive"),
        ({"timeout": True}, "number"),
        ({"timeout": "5"}, "number"),
        ({"headers": {"X-A": "1\r\nX-Injected: 2"}}, "cannot send"),
        ({"headers": {"Bad:Name": "1"}}, "cannot send"),
        ({"headers": {"X-A": 1}}, "dict of str"),
        ({"headers": [("X-A", "1")]}, "dict of str"),
    ],
)
def test_webhook_options_are_checked(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        WebhookNotifier("https://hooks.example.com/x", **kwargs)


def test_webhook_from_env(monkeypatch, webhook):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert WebhookNotifier.from_env() is None
    monkeypatch.setenv(ENV_VAR, "")
    assert WebhookNotifier.from_env() is None
    monkeypatch.setenv(ENV_VAR, webhook.url)
    notifier = WebhookNotifier.from_env(timeout=2)
    assert notifier is not None
    assert notifier.timeout == 2.0
    notifier.jobmon_alerts_found(alerts=[BROKEN], changes=CHANGE, schema="s")
    assert len(webhook.requests) == 1
    monkeypatch.setenv(ENV_VAR, "gopher://host/x")
    with pytest.raises(InvalidArgumentError):
        WebhookNotifier.from_env()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example.com/a/b?token=x#f", "https://hooks.example.com/a/b"),
        ("http://user@[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://h:9/", "http://h:9/"),
        ("http://[::1/x", "<invalid URL>"),
    ],
)
def test_shown_url(url, shown):
    assert shown_url(url) == shown
