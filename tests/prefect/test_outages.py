"""Jobmon slow, stuck or gone: a flow process never hangs on its writer, an outage warns
once, and a forked child logs with locks of its own."""

from __future__ import annotations

import logging
import os
import threading
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from jobmon_core import Jobmon
from jobmon_prefect import destination as destinations
from jobmon_prefect import runlog
from jobmon_prefect.background import MAX_QUEUED, SHORT_DRAIN, BackgroundWriter, writer
from jobmon_prefect.blocks import NETWORK_TIMEOUTS, JobmonPostgres, with_network_timeouts
from jobmon_prefect.destination import close_all, destination


def test_prefect_sessions_get_keepalives_and_a_tcp_user_timeout(logged, dsn):
    where = destination()
    assert where.jobmon is not None
    params = conninfo_to_dict(where.jobmon.target.conninfo)
    for name, value in NETWORK_TIMEOUTS.items():
        assert params[name] == value
    mine = conninfo_to_dict(with_network_timeouts(f"{dsn} keepalives_idle=99"))
    assert (mine["keepalives_idle"], mine["tcp_user_timeout"]) == ("99", "20000")  # theirs wins
    block = JobmonPostgres(dsn=dsn, schema_name=logged.schema).jobmon()
    with block:
        assert conninfo_to_dict(block.target.conninfo)["tcp_user_timeout"] == "20000"
        assert block.schema_version() > 0  # libpq takes them: a real session


def test_exit_never_waits_for_a_writer_stuck_in_a_write(logged, dsn, caplog):
    """The writer is inside a write that does not return (here: waiting for a table lock;
    in the field: a network that died mid-write), holding its session's lock. close_all
    cancels the statement instead of waiting to close the session."""
    caplog.set_level(logging.WARNING, logger="jobmon_prefect")
    where = destination()
    assert where.jobmon is not None
    jobmon = where.jobmon
    jobmon.add_job("warm up")  # the session is open
    with psycopg.connect(dsn, row_factory=tuple_row) as blocker:
        blocker.execute(f"LOCK TABLE {logged.schema}.job_log IN ACCESS EXCLUSIVE MODE")
        writer.submit(lambda: _guarded(where, lambda: jobmon.add_job("stuck")))
        time.sleep(0.3)  # the write waits for the lock (lock_timeout: 5 s)
        started = time.monotonic()
        close_all(timeout=0.5)
        elapsed = time.monotonic() - started
        blocker.rollback()
    assert elapsed < 3, elapsed
    messages = [r.getMessage() for r in caplog.records if r.name == "jobmon_prefect"]
    assert any("cancelling its statement" in m for m in messages), messages
    assert writer.drain(5)  # the cancelled write returned at once


def _guarded(where, work) -> None:
    with where.guard("a test write"):
        work()


def test_after_one_drain_times_out_the_next_ones_are_short_and_silent(caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="jobmon_prefect")
    mine = BackgroundWriter()
    gate = threading.Event()
    mine.submit(lambda: gate.wait(10))
    try:
        assert not mine.drain(0.3)
        started = time.monotonic()
        assert not mine.drain(30)  # a flow end in the same outage
        assert time.monotonic() - started < SHORT_DRAIN + 0.5
    finally:
        gate.set()
    messages = [r.getMessage() for r in caplog.records if r.name == "jobmon_prefect"]
    assert len(messages) == 1, messages
    assert "did not finish within" in messages[0]
    assert mine.drain(5)


def test_a_full_queue_warns_once_per_process(caplog):
    caplog.set_level(logging.WARNING, logger="jobmon_prefect")
    mine = BackgroundWriter()
    gate = threading.Event()
    mine.submit(lambda: gate.wait(10))
    time.sleep(0.1)  # the thread holds that one: the queue is empty
    try:
        accepted = sum(mine.submit(lambda: None) for _ in range(MAX_QUEUED + 5))
        assert accepted == MAX_QUEUED
    finally:
        gate.set()
    deadline = time.monotonic() + 10
    while mine._queue.qsize() and time.monotonic() < deadline:  # it catches up
        time.sleep(0.05)
    assert mine.drain(10)
    gate.clear()
    mine.submit(lambda: gate.wait(10))
    time.sleep(0.1)
    try:
        for _ in range(MAX_QUEUED + 5):  # full again after it caught up: no new warning
            mine.submit(lambda: None)
    finally:
        gate.set()
    messages = [r.getMessage() for r in caplog.records if r.name == "jobmon_prefect"]
    assert len(messages) == 1, messages
    assert "dropping new ones" in messages[0]


def test_a_forked_child_gets_fresh_locks_and_its_own_writer(logged: Jobmon):
    """Locks held by a parent's thread at the fork would stay held in the child for ever:
    the child must still log (a task runner forking workers, multiprocessing)."""
    where = destination()
    writer.submit(lambda: None)
    held = [runlog._jobs._lock, where.guard._lock, writer._lock, destinations._lock]
    for lock in held:
        lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the child: log through every lock the parent holds
            code = 1
            try:
                runlog._jobs.put(("child", "x"), 1)
                with destination().guard("the child's write"):
                    destination().jobmon.close_job(destination().jobmon.add_job("child"))  # type: ignore[union-attr]
                writer.submit(lambda: None)
                code = 0 if writer.drain(5) else 2
            finally:
                os._exit(code)
    finally:
        for lock in held:
            lock.release()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the forked child hung on a lock its parent held")
    assert os.waitstatus_to_exitcode(status) == 0
    assert [j.status for j in logged.show_job("child")] == ["OK"]
