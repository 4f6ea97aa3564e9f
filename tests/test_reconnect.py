"""A broken logging connection is replaced, and the call that found it lands exactly once."""

from __future__ import annotations

import gc
import os

import psycopg
import pytest

from jobmon_core import Jobmon, JobmonConnectionError

from .faults import cutting_proxy
from .tables import Rows


def kill_logging_backend(admin: psycopg.Connection, jm: Jobmon) -> None:
    pid = jm._connection.backend_pid
    assert pid is not None
    row = admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()
    assert row is not None
    (killed,) = row
    assert killed


def test_a_backend_killed_between_calls_is_replaced(jm, rows, admin):
    job = jm.add_job("killed between calls")
    old_pid = jm._connection.backend_pid
    kill_logging_backend(admin, jm)
    step = jm.add_step(job, "after the kill")
    assert jm._connection.backend_pid != old_pid
    kill_logging_backend(admin, jm)
    jm.update_step(step, "OK", "still here")
    kill_logging_backend(admin, jm)
    jm.close_job(job)
    assert [(d["action"], d["status"]) for d in rows("job_detail")] == [("after the kill", "OK")]
    assert rows("job_log")[0]["status"] == "OK"


def test_many_kills_during_a_job_lose_and_duplicate_nothing(jm, rows, admin):
    job = jm.add_job("killed often")
    for i in range(60):
        if i % 3 == 0:
            kill_logging_backend(admin, jm)
        step = jm.add_step(job, f"step {i}")
        if i % 4 == 1:
            kill_logging_backend(admin, jm)
        jm.update_step(step, "OK", f"done {i}")
    kill_logging_backend(admin, jm)
    jm.close_job(job)
    details = rows("job_detail")
    assert [d["action"] for d in details] == [f"step {i}" for i in range(60)]
    assert all(d["status"] == "OK" for d in details)
    assert len({d["step_id"] for d in details}) == 60
    assert rows("job_log")[0]["status"] == "OK"
    assert rows("job_check_log") == []


def _cut_add_job(jm: Jobmon, job: int, rows: Rows) -> None:
    jm.add_job("cut")
    assert [r["job_name"] for r in rows("job_log")].count("CUT") == 1


def _cut_add_step(jm: Jobmon, job: int, rows: Rows) -> None:
    jm.add_step(job, "cut")
    assert [r["action"] for r in rows("job_detail")].count("cut") == 1


def _cut_update_step(jm: Jobmon, job: int, rows: Rows) -> None:
    step = rows("job_detail")[0]["step_id"]
    jm.update_step(step, "OK", "cut")
    assert rows("job_detail")[0]["message"] == "cut"


def _cut_fail_job(jm: Jobmon, job: int, rows: Rows) -> None:
    jm.fail_job(job)
    assert rows("job_log")[0]["status"] == "CRITICAL"
    assert len(rows("job_check_log")) == 1  # the trigger fired once, not twice


def _cut_close_job(jm: Jobmon, job: int, rows: Rows) -> None:
    jm.close_job(job)
    assert rows("job_log")[0]["status"] == "OK"


@pytest.mark.parametrize(
    ("marker", "call_and_check"),
    [
        (b"INSERT 0 1", _cut_add_job),
        (b"INSERT 0 1", _cut_add_step),
        (b"UPDATE 1", _cut_update_step),
        (b"UPDATE 1", _cut_fail_job),
        (b"UPDATE 1", _cut_close_job),
    ],
    ids=["add_job", "add_step", "update_step", "fail_job", "close_job"],
)
def test_a_write_committed_but_unanswered_lands_exactly_once(
    dsn, schema_name, admin, marker, call_and_check
):
    """The dangerous fault: the server commits, then the connection dies before the answer.
    A real TCP proxy cuts the connection right after the server's answer to the write."""
    rows = Rows(admin, schema_name)
    with cutting_proxy(dsn) as proxy:
        jm = Jobmon(proxy.dsn, schema=schema_name)
        jm.install()
        job = jm.add_job("cut job")
        jm.add_step(job, "warm up")  # statements are prepared: the cut hits the write itself
        proxy.cut_after(marker)
        call_and_check(jm, job, rows)
        assert proxy.cuts == 1
        jm.close()


def test_a_database_that_stays_away_is_a_clear_error(dsn, schema_name):
    with cutting_proxy(dsn) as proxy:
        jm = Jobmon(proxy.dsn, schema=schema_name, connect_timeout=2)
        jm.install()
        jm.add_job("before")
    # the proxy is gone: the broken connection cannot be replaced
    with pytest.raises(JobmonConnectionError, match="cannot connect to the jobmon database"):
        jm.add_job("after")


def test_a_forked_child_logs_on_its_own_connection_and_spares_the_parents(jm, rows, admin):
    job = jm.add_job("forking")
    parent_pid = jm._connection.backend_pid
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            step = jm.add_step(job, "from the child")
            jm.update_step(step, "OK", str(jm._connection.backend_pid != parent_pid))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    jm.add_step(job, "from the parent")
    assert jm._connection.backend_pid == parent_pid  # the parent's session was untouched
    details = rows("job_detail")
    assert [(d["action"], d["message"]) for d in details] == [
        ("from the child", "True"),
        ("from the parent", None),
    ]


def test_a_forked_child_closing_jobmon_spares_the_parents_session(jm, admin):
    """Closing the inherited connection normally would send libpq's Terminate message over
    the socket the parent still uses, ending the parent's session."""
    jm.add_job("close in child")
    parent_pid = jm._connection.backend_pid
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        jm.close()
        gc.collect()
        os._exit(0)
    os.waitpid(child, 0)
    jm.add_job("after the child")
    assert jm._connection.backend_pid == parent_pid
