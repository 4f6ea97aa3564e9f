"""Bounded waits: a logging call blocked by a lock gives up with a clear error, never hangs.

Another session (or the job's own transaction: upstream's self-deadlock, research §5) holds a
lock that a logging statement needs. With ``lock_timeout`` the call raises
:class:`LockTimeoutError` within the bound, the statement is rolled back, the logging
connection stays usable, and once the lock is gone the same call lands exactly once.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Params
from psycopg.conninfo import make_conninfo

from jobmon_core import InvalidArgumentError, Jobmon, JobmonError
from jobmon_core.errors import JobmonTimeoutError, LockTimeoutError, StatementTimeoutError

LOCK_TIMEOUT = 0.3
BOUND = 2.0  # the call must fail well within this (0.3 s plus a loaded CI machine's slack)


@pytest.fixture
def quick(jm: Jobmon, dsn: str) -> Iterator[Jobmon]:
    """A Jobmon on the installed schema of ``jm`` that waits at most 0.3 s for a lock."""
    jobmon = Jobmon(dsn, schema=jm.schema, lock_timeout=LOCK_TIMEOUT)
    yield jobmon
    jobmon.close()


@contextlib.contextmanager
def held(dsn: str, schema: str, statement: str, params: Params | None = None) -> Iterator[None]:
    """Another session runs ``statement`` (``{}`` is the schema) in a transaction left open;
    its locks are held until the block ends, then rolled back."""
    with psycopg.connect(dsn) as other:
        other.execute(sql.SQL(statement).format(sql.Identifier(schema)), params)
        try:
            yield
        finally:
            other.rollback()


def timed_failure(call, error=LockTimeoutError) -> tuple[JobmonError, float]:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    return caught.value, time.monotonic() - started


def session_setting(jobmon: Jobmon, name: str) -> str:
    rows = jobmon._connection.run(
        lambda conn, _: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchall()
    )
    value: str = rows[0][0]
    return value


# -- the settings ---------------------------------------------------------------------------


def test_the_logging_session_waits_5_s_for_a_lock_and_15_s_for_a_statement_by_default(jm):
    assert session_setting(jm, "lock_timeout") == "5s"
    assert session_setting(jm, "statement_timeout") == "15s"


@pytest.mark.parametrize(
    ("kwargs", "lock", "statement"),
    [
        ({"lock_timeout": 0.3, "statement_timeout": 2}, "300ms", "2s"),
        ({"lock_timeout": timedelta(minutes=1), "statement_timeout": timedelta(0)}, "1min", "0"),
        ({"lock_timeout": None, "statement_timeout": None}, "0", "0"),
        ({"lock_timeout": 0.0001}, "1ms", "15s"),
    ],
)
def test_timeouts_in_seconds_or_timedelta_none_and_zero_leave_the_servers(
    dsn, jm, kwargs, lock, statement
):
    jobmon = Jobmon(dsn, schema=jm.schema, **kwargs)
    assert session_setting(jobmon, "lock_timeout") == lock
    assert session_setting(jobmon, "statement_timeout") == statement
    jobmon.close()


def test_the_connection_strings_own_settings_win_and_its_other_options_stay(dsn, jm):
    own = make_conninfo(dsn, options="-c lock_timeout=2s -c work_mem=8MB")
    jobmon = Jobmon(own, schema=jm.schema)
    assert session_setting(jobmon, "lock_timeout") == "2s"  # the DSN's, not our 5 s
    assert session_setting(jobmon, "statement_timeout") == "15s"  # ours
    assert session_setting(jobmon, "work_mem") == "8MB"  # kept
    jobmon.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lock_timeout": -1}, "lock_timeout must be zero or more seconds"),
        ({"statement_timeout": -0.5}, "statement_timeout must be zero or more seconds"),
        ({"lock_timeout": math.nan}, "lock_timeout must be zero or more seconds"),
        ({"lock_timeout": math.inf}, "at most 2147483 seconds"),
        ({"statement_timeout": 3e6}, "at most 2147483 seconds"),
        ({"lock_timeout": timedelta(days=-1)}, "zero or more seconds"),
        ({"lock_timeout": "5s"}, "lock_timeout must be a number of seconds, a datetime"),
        ({"statement_timeout": True}, "statement_timeout must be a number of seconds"),
        ({"prepare": "no"}, "prepare must be True, False or None"),
    ],
)
def test_bad_timeout_arguments_are_refused_at_once(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Jobmon("dbname=never_used", **kwargs)


# -- locks held by another session ----------------------------------------------------------


def test_add_step_blocked_by_a_table_lock_gives_up_then_lands_once(quick, dsn, rows):
    job = quick.add_job("locked out")
    pid = quick._connection.backend_pid
    with held(dsn, quick.schema, "LOCK TABLE {}.job_detail IN ACCESS EXCLUSIVE MODE"):
        error, seconds = timed_failure(lambda: quick.add_step(job, "blocked"))
    assert LOCK_TIMEOUT * 0.8 <= seconds < BOUND
    assert isinstance(error, JobmonTimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.sqlstate == "55P03"
    message = str(error)
    assert "lock_timeout = 0.3 s" in message
    assert "canceling statement due to lock timeout" in message
    assert "pg_blocking_pids()" in message
    assert "rolled back" in message
    step = quick.add_step(job, "blocked")  # the same call, once the lock is gone
    quick.update_step(step, "OK", "after the lock")
    quick.close_job(job)
    assert quick._connection.backend_pid == pid  # the session survived the time-out
    assert [(d["action"], d["status"]) for d in rows("job_detail")] == [("blocked", "OK")]
    assert rows("job_log")[0]["status"] == "OK"


def test_update_step_blocked_by_a_table_lock_gives_up_then_lands_once(quick, dsn, rows):
    job = quick.add_job("update locked out")
    step = quick.add_step(job, "to update")
    with held(dsn, quick.schema, "LOCK TABLE {}.job_detail IN ACCESS EXCLUSIVE MODE"):
        _, seconds = timed_failure(lambda: quick.update_step(step, "OK", "first try"))
    assert seconds < BOUND
    assert rows("job_detail")[0]["status"] is None  # nothing of the failed call was written
    quick.update_step(step, "OK", "second try")
    quick.close_job(job)
    [detail] = rows("job_detail")
    assert (detail["status"], detail["message"]) == ("OK", "second try")


def test_close_job_blocked_by_a_row_lock_gives_up_then_closes_once(quick, dsn, rows):
    job = quick.add_job("row locked")
    quick.update_step(quick.add_step(job, "work"), "OK", None)
    lock_row = "SELECT * FROM {}.job_log WHERE job_id = %s FOR UPDATE"
    with held(dsn, quick.schema, lock_row, [job]):
        _, seconds = timed_failure(lambda: quick.close_job(job))
        assert seconds < BOUND
        # FOR UPDATE also blocks the foreign-key check of a new step (FOR KEY SHARE)
        _, seconds = timed_failure(lambda: quick.add_step(job, "blocked by the row lock"))
        assert seconds < BOUND
    assert rows("job_log")[0]["end_time"] is None
    quick.close_job(job)
    [log] = rows("job_log")
    assert log["status"] == "OK"
    assert log["end_time"] is not None
    assert [d["action"] for d in rows("job_detail")] == ["work"]
    assert len(rows("job_check_log")) == 0  # the monitor trigger ran for the one close only


def test_fail_and_cancel_job_blocked_by_a_row_lock_give_up(quick, dsn, rows):
    first, second = quick.add_job("to fail"), quick.add_job("to cancel")
    lock_rows = "SELECT * FROM {}.job_log WHERE job_id IN (%s, %s) FOR UPDATE"
    with held(dsn, quick.schema, lock_rows, [first, second]):
        timed_failure(lambda: quick.fail_job(first))
        timed_failure(lambda: quick.cancel_job(second))
    assert [r["status"] for r in rows("job_log")] == [None, None]
    quick.fail_job(first)
    quick.cancel_job(second)
    assert [r["status"] for r in rows("job_log")] == ["CRITICAL", "CRITICAL"]
    assert len(rows("job_check_log")) == 2  # one failure each, not two


def test_checks_and_reports_share_the_bound(quick, dsn):
    quick.add_job("listed")
    with held(dsn, quick.schema, "LOCK TABLE {}.job_log IN ACCESS EXCLUSIVE MODE"):
        for call in (quick.check_job_status, quick.show_running, lambda: quick.show_job("x")):
            timed_failure(call)
    assert quick.show_job("listed")


def test_a_buffered_batch_blocked_by_a_lock_stays_queued_and_lands_once(dsn, jm, rows):
    buffered = Jobmon(dsn, schema=jm.schema, lock_timeout=LOCK_TIMEOUT, buffered=True)
    buffered._buffer.flush_interval = 3600  # only explicit flushes in this test
    job = buffered.add_job("buffered")
    steps = [buffered.add_step(job, f"step {i}") for i in range(5)]
    for step in steps[:3]:
        buffered.update_step(step, "OK", None)
    with held(dsn, jm.schema, "LOCK TABLE {}.job_detail IN ACCESS EXCLUSIVE MODE"):
        timed_failure(buffered.flush)
    assert rows("job_detail") == []  # the batch is one transaction: rolled back as a whole
    assert buffered.flush() == 5
    buffered.close_job(job)
    details = rows("job_detail")
    assert [d["action"] for d in details] == [f"step {i}" for i in range(5)]
    assert [d["status"] for d in details] == ["OK", "OK", "OK", None, None]
    buffered.close()


def test_statement_timeout_bounds_any_statement_with_its_own_error(dsn, jm):
    jobmon = Jobmon(dsn, schema=jm.schema, lock_timeout=None, statement_timeout=0.3)
    job = jobmon.add_job("slow")
    with held(dsn, jm.schema, "LOCK TABLE {}.job_detail IN ACCESS EXCLUSIVE MODE"):
        error, seconds = timed_failure(
            lambda: jobmon.add_step(job, "waits"), error=StatementTimeoutError
        )
    assert seconds < BOUND
    assert error.sqlstate == "57014"
    assert "statement_timeout = 0.3 s" in str(error)
    assert "canceling statement due to statement timeout" in str(error)
    assert isinstance(error, JobmonTimeoutError)
    jobmon.add_step(job, "waits")
    jobmon.close()


def test_a_cancelled_statement_is_a_clear_error(dsn, jm, admin):
    jobmon = Jobmon(dsn, schema=jm.schema, lock_timeout=None, statement_timeout=None)
    job = jobmon.add_job("cancelled")
    failures: list[BaseException] = []

    def blocked() -> None:
        try:
            jobmon.add_step(job, "waits for the lock")
        except JobmonError as exc:
            failures.append(exc)

    with held(dsn, jm.schema, "LOCK TABLE {}.job_detail IN ACCESS EXCLUSIVE MODE"):
        thread = threading.Thread(target=blocked)
        thread.start()
        wait_for_lock_wait(admin, jobmon._connection.backend_pid)
        jobmon.cancel()
        thread.join(5)
    assert not thread.is_alive()
    assert len(failures) == 1
    assert "cancelled" in str(failures[0])
    assert "Jobmon.cancel()" in str(failures[0])
    assert not isinstance(failures[0], JobmonTimeoutError)
    jobmon.close()


# -- the job's own transaction holds the lock (upstream's self-deadlock) --------------------


def wait_for_lock_wait(admin: psycopg.Connection, pid: int | None, seconds: float = 5) -> None:
    """Wait until backend ``pid`` waits for a heavyweight lock."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def test_without_lock_timeout_the_jobs_own_lock_blocks_logging_past_the_deadlock_detector(
    dsn, jm, work, admin, rows
):
    """The hazard itself: the job's transaction holds its job_log row, the logging session
    waits for it, and PostgreSQL's deadlock detector cannot help (the job's session is not
    waiting for a lock, it waits for its client, which waits for us). A single-threaded job
    would wait forever; here another thread plays the job and rolls back after 2 s."""
    unbounded = Jobmon(dsn, schema=jm.schema, lock_timeout=None, statement_timeout=None)
    job = unbounded.add_job("self deadlock", conn=work)
    work.execute(
        sql.SQL("UPDATE {} SET owner = owner WHERE job_id = %s").format(
            sql.Identifier(jm.schema, "job_log")
        ),
        [job],
    )
    (deadlock_timeout,) = admin.execute(
        "SELECT setting::int / 1000.0 FROM pg_settings WHERE name = 'deadlock_timeout'"
    ).fetchone()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (unbounded.close_job(job), done.set()))
    thread.start()
    wait_for_lock_wait(admin, unbounded._connection.backend_pid)
    assert not done.wait(float(deadlock_timeout) + 1)  # still waiting, no deadlock reported
    work.rollback()  # what the job can never do while it waits for its own logging call
    thread.join(5)
    assert done.is_set()
    assert rows("job_log")[0]["status"] == "OK"
    unbounded.close()


def test_with_lock_timeout_the_jobs_own_lock_is_a_clear_error_not_a_hang(quick, work, rows):
    job = quick.add_job("self deadlock", conn=work)
    work.execute(
        sql.SQL("UPDATE {} SET owner = owner WHERE job_id = %s").format(
            sql.Identifier(quick.schema, "job_log")
        ),
        [job],
    )
    error, seconds = timed_failure(lambda: quick.close_job(job))
    assert seconds < BOUND
    assert "the job's own transaction" in str(error)
    assert "commit or roll back" in str(error)
    work.commit()  # what the message says: the job ends its transaction, then logs
    quick.close_job(job)
    assert rows("job_log")[0]["status"] == "OK"


def test_a_job_that_locks_the_log_in_its_own_transaction_fails_clearly(quick, work, rows):
    """With the context managers: the job's transaction takes a lock on job_detail (a
    maintenance job, say), then logs a step. The step gives up after lock_timeout, the
    error propagates out of the job, and the job is still recorded as failed."""
    with pytest.raises(LockTimeoutError), quick.job("locks its own log", conn=work) as job:
        work.execute(
            sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                sql.Identifier(quick.schema, "job_detail")
            )
        )
        with job.step("blocked by the job's own lock"):
            pass  # never reached
    work.rollback()
    [log] = rows("job_log")
    assert log["status"] == "CRITICAL"
    assert log["end_time"] is not None
    assert rows("job_detail") == []  # both step inserts gave up; nothing half-written
