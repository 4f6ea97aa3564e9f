"""The alert state shared by every checker of a schema (``check_job_status(shared_state=True)``,
table ``job_alert_state``): a flip is reported once, whichever process checks, however many
check at the same moment, and again after a notifier failed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
from psycopg import sql

from jobmon_core import Jobmon
from jobmon_core.plugins import hookimpl, new_plugin_manager

from .backends import backend_pids, left_behind
from .test_plugins import Exploder


class Heard:
    """A notifier plugin: writes down the (job, previous, current) of every change."""

    def __init__(self, hold: Callable[[], None] | None = None) -> None:
        self.changes: list[list[tuple[str | None, int, int]]] = []
        self._hold = hold

    @hookimpl
    def jobmon_alerts_found(self, changes):
        if self._hold is not None:
            self._hold()
        self.changes.append([(c.job_name, c.previous_code, c.current_code) for c in changes])


def checker(dsn: str, schema: str, *plugins: object, **options: float) -> Jobmon:
    """A checking "process": a Jobmon of its own, with its own plugins."""
    manager = new_plugin_manager(load_entry_points=False)
    for number, plugin in enumerate(plugins):
        manager.register(plugin, f"plugin{number}")
    return Jobmon(dsn, schema=schema, plugins=manager, **options)  # type: ignore[arg-type]


def break_job(jm: Jobmon, name: str = "broken") -> None:
    for _ in range(3):
        jm.fail_job(jm.add_job(name))


def lock_state(jm: Jobmon, mode: str) -> sql.Composed:
    return sql.SQL("LOCK TABLE {} IN {} MODE").format(
        sql.Identifier(jm.schema, "job_alert_state"), sql.SQL(mode)
    )


def stored(rows) -> dict[str | None, int]:
    return {r["job_name"]: r["alert_code"] for r in rows("job_alert_state")}


def test_a_flip_is_reported_once_across_processes(dsn, jm, rows):
    heard = Heard()
    break_job(jm)
    for _ in range(3):  # three processes in turn: the first reports the flip, no other does
        process = checker(dsn, jm.schema, heard)
        process.check_job_status(shared_state=True)
        process.close()
    assert heard.changes == [[("BROKEN", 1, 3)], [], []]
    assert stored(rows) == {"BROKEN": 3}
    jm.close_job(jm.add_job("broken"))
    process = checker(dsn, jm.schema, heard)
    process.check_job_status(shared_state=True)
    assert process.alert_state == {}
    process.close()
    assert heard.changes[3:] == [[("BROKEN", 3, 1)]]
    assert stored(rows) == {}


def test_the_in_memory_state_still_reports_each_new_object(dsn, jm):
    """The default stays in memory: a new object has no previous check (people who set
    ``alert_state`` themselves keep their own state)."""
    heard = Heard()
    break_job(jm)
    for _ in range(2):
        checker(dsn, jm.schema, heard).check_job_status()
    assert heard.changes == [[("BROKEN", 1, 3)], [("BROKEN", 1, 3)]]
    restored = checker(dsn, jm.schema, heard)
    restored.alert_state = {"BROKEN": 3}
    restored.check_job_status()
    assert heard.changes[2] == []


def test_after_a_failing_notifier_the_flip_is_reported_again(dsn, jm, rows, caplog):
    heard = Heard()
    break_job(jm)
    with caplog.at_level(logging.WARNING, logger="jobmon_core"):
        checker(dsn, jm.schema, Exploder(), heard).check_job_status(shared_state=True)
    assert "failed in jobmon_alerts_found" in caplog.text
    assert stored(rows) == {}  # not taken by every notifier: not stored
    checker(dsn, jm.schema, heard).check_job_status(shared_state=True)
    checker(dsn, jm.schema, heard).check_job_status(shared_state=True)
    assert heard.changes == [[("BROKEN", 1, 3)], [("BROKEN", 1, 3)], []]
    assert stored(rows) == {"BROKEN": 3}


def test_two_checks_at_the_same_moment_report_a_flip_once(dsn, jm, rows):
    inside = threading.Event()
    release = threading.Event()

    def hold_first() -> None:
        if not inside.is_set():
            inside.set()
            assert release.wait(10)

    heard = Heard(hold=hold_first)
    break_job(jm)
    first = checker(dsn, jm.schema, heard)
    second = checker(dsn, jm.schema, heard)
    results: dict[str, object] = {}

    def run(name: str, jobmon: Jobmon) -> None:
        results[name] = [a.job_name for a in jobmon.check_job_status(shared_state=True)]

    one = threading.Thread(target=run, args=("first", first))
    one.start()
    assert inside.wait(10)  # the first check is notifying, holding the state
    two = threading.Thread(target=run, args=("second", second))
    two.start()
    two.join(0.5)
    assert two.is_alive()  # the second waits for the first
    release.set()
    one.join(10)
    two.join(10)
    assert results == {"first": ["BROKEN"], "second": ["BROKEN"]}
    assert heard.changes == [[("BROKEN", 1, 3)], []]
    assert stored(rows) == {"BROKEN": 3}


def test_a_check_that_cannot_get_the_state_in_time_still_checks(dsn, jm, admin, caplog):
    heard = Heard()
    break_job(jm)
    impatient = checker(dsn, jm.schema, heard, lock_timeout=0.2)
    with admin.transaction():
        admin.execute(lock_state(jm, "SHARE ROW EXCLUSIVE"))
        with caplog.at_level(logging.WARNING, logger="jobmon_core"):
            alerts = impatient.check_job_status(shared_state=True)
    assert [a.job_name for a in alerts] == ["BROKEN"]
    assert heard.changes == [[]]  # no changes: the check holding the state reports them
    assert "another check holds the alert state" in caplog.text
    impatient.check_job_status(shared_state=True)
    assert heard.changes[1:] == [[("BROKEN", 1, 3)]]


def test_without_a_notifier_the_shared_check_stays_read_only(dsn, jm, rows, admin, caplog):
    break_job(jm)
    quiet = checker(dsn, jm.schema, lock_timeout=0.2)
    with admin.transaction(), caplog.at_level(logging.WARNING, logger="jobmon_core"):
        # any use of the table would wait for this lock
        admin.execute(lock_state(jm, "ACCESS EXCLUSIVE"))
        assert [a.job_name for a in quiet.check_job_status(shared_state=True)] == ["BROKEN"]
    assert caplog.text == ""
    assert stored(rows) == {}


def test_a_bad_window_is_refused_before_connecting():
    from jobmon_core import InvalidArgumentError

    manager = new_plugin_manager(load_entry_points=False)
    manager.register(Heard())
    unreachable = Jobmon("postgresql://u:pw@127.0.0.1:1/db", plugins=manager)
    with pytest.raises(InvalidArgumentError, match="history"):
        unreachable.check_job_status(-1, shared_state=True)


def test_shared_checks_reuse_one_connection_that_close_ends(dsn, jm, admin):
    """A new connection per shared check cost more than the check itself (~15 ms): one is
    kept for the next checks, and Jobmon.close() closes it with the logging connection."""
    heard = Heard()
    break_job(jm)
    watched = checker(dsn, jm.schema, heard, application_name="jobmon-shared-check")

    watched.check_job_status(shared_state=True)
    first = backend_pids(admin, "jobmon-shared-check")
    for _ in range(5):
        watched.check_job_status(shared_state=True)
    assert backend_pids(admin, "jobmon-shared-check") == first
    assert len(first) == 1  # the shared state's own; the check itself ran on it
    watched.close()
    assert left_behind(admin, "jobmon-shared-check") == []
