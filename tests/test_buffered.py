"""Buffered step logging: fast, flushed at job end, on a timer, at exit; losses as stated."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jobmon_core import (
    InvalidArgumentError,
    Jobmon,
    JobNotFoundError,
    LockTimeoutError,
    StepNotFoundError,
)

from .faults import cutting_proxy
from .tables import Rows


@pytest.fixture
def bjm(dsn, jm):
    buffered = Jobmon(dsn, schema=jm.schema, buffered=True, flush_interval=30)
    yield buffered
    buffered.close()


def test_steps_wait_in_memory_until_the_job_ends(bjm, rows):
    job = bjm.add_job("buffered")
    steps = [bjm.add_step(job, f"step {i}") for i in range(50)]
    for step in steps:
        bjm.update_step(step, "OK", f"done {step}")
    assert rows("job_detail") == []  # nothing written yet
    bjm.close_job(job)  # flushes first: the job never ends before its steps
    details = rows("job_detail")
    assert [d["step_id"] for d in details] == steps
    assert steps == sorted(steps)
    assert all(d["status"] == "OK" and d["elapsed_time"] is not None for d in details)
    assert all(d["end_time"] >= d["start_time"] for d in details)
    assert rows("job_log")[0]["status"] == "OK"


def test_an_exception_in_a_job_block_flushes_and_fails(bjm, rows):
    with pytest.raises(ValueError), bjm.job("buffered failure") as job:
        with job.step("fine"):
            pass
        with job.step("boom"):
            raise ValueError("boom")
    assert [(d["action"], d["status"]) for d in rows("job_detail")] == [
        ("fine", "OK"),
        ("boom", "CRITICAL"),
    ]
    assert rows("job_log")[0]["status"] == "CRITICAL"


def test_the_timer_and_the_size_limit_flush(dsn, jm, rows):
    timed = Jobmon(dsn, schema=jm.schema, buffered=True, flush_interval=0.2)
    job = timed.add_job("timed")
    timed.add_step(job, "soon written")
    time.sleep(0.6)
    assert len(rows("job_detail")) == 1
    sized = Jobmon(dsn, schema=jm.schema, buffered=True, flush_interval=30, max_buffer=10)
    for i in range(25):
        sized.add_step(job, f"sized {i}")
    assert len(rows("job_detail")) == 1 + 20
    timed.close()
    sized.close()
    assert len(rows("job_detail")) == 26


def test_updating_an_already_written_step(bjm, rows):
    job = bjm.add_job("older step")
    step = bjm.add_step(job, "written first")
    bjm.flush()
    bjm.update_step(step, "WARNING", "later")
    bjm.flush()
    (detail,) = rows("job_detail")
    assert (detail["action"], detail["status"], detail["message"]) == (
        "written first",
        "WARNING",
        "later",
    )


def test_bad_ids_are_still_typed_errors(bjm):
    with pytest.raises(JobNotFoundError):
        bjm.add_step(987654, "x")
    with pytest.raises(StepNotFoundError):
        bjm.update_step(987654, "OK", None)


def test_bad_buffer_settings(dsn):
    with pytest.raises(InvalidArgumentError, match="flush_interval"):
        Jobmon(dsn, buffered=True, flush_interval=0)
    with pytest.raises(InvalidArgumentError, match="max_buffer"):
        Jobmon(dsn, buffered=True, max_buffer=0)


def _child(dsn: str, schema: str, ending: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        from jobmon_core import Jobmon
        jm = Jobmon({dsn!r}, schema={schema!r}, buffered=True, flush_interval=60)
        job = jm.add_job("child {ending}")
        for i in range(100):
            jm.update_step(jm.add_step(job, f"step {{i}}"), "OK", None)
        print("logged", flush=True)
        if {ending!r} == "exception":
            raise RuntimeError("the job crashed")
        if {ending!r} == "sigkill":
            time.sleep(60)
    """)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("ending", ["normal", "exception"])
def test_a_normal_exit_and_an_uncaught_exception_both_flush(dsn, jm, rows, ending):
    child = _child(dsn, jm.schema, ending)
    child.communicate(timeout=60)
    assert child.returncode == (0 if ending == "normal" else 1)
    assert len(rows("job_detail")) == 100


def test_sigkill_loses_only_the_unflushed_steps_as_documented(dsn, jm, rows):
    child = _child(dsn, jm.schema, "sigkill")
    assert child.stdout.readline().strip() == "logged"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert [r["job_name"] for r in rows("job_log")] == ["CHILD SIGKILL"]  # durable
    assert rows("job_detail") == []  # the buffered steps were never flushed


def test_a_batch_retried_after_a_killed_backend_lands_once(bjm, rows, admin):
    job = bjm.add_job("killed flush")
    for i in range(20):
        bjm.add_step(job, f"step {i}")
    admin.execute("SELECT pg_terminate_backend(%s, 5000)", [bjm._connection.backend_pid])
    assert bjm.flush() == 20
    assert len(rows("job_detail")) == 20


def test_steps_of_a_deleted_job_are_dropped_and_the_rest_written(bjm, rows, admin, caplog):
    """One bad step must not block every later write: the steps whose job is gone are
    dropped and reported, the others land, and later calls work."""
    doomed = bjm.add_job("doomed")
    kept = bjm.add_job("kept")
    lost = [bjm.add_step(doomed, f"lost {i}") for i in range(3)]
    for i in range(4):
        bjm.update_step(bjm.add_step(kept, f"kept {i}"), "OK", None)
    rows.execute("DELETE FROM job_log WHERE job_id = %s", [doomed])  # job_log_clear, say
    with caplog.at_level("WARNING", logger="jobmon_core"):
        bjm.close_job(kept)  # flushes first: must not fail for another job's steps
    assert [d["action"] for d in rows("job_detail")] == [f"kept {i}" for i in range(4)]
    (report,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert ", ".join(map(str, lost)) in report
    assert f"of job {doomed}" in report
    assert "no longer exists" in report
    later = bjm.add_job("later")  # nothing left behind to poison later calls
    bjm.add_step(later, "fine")
    bjm.close()
    assert len(rows("job_detail")) == 5


def test_an_update_of_a_deleted_step_is_reported_not_lost_silently(bjm, rows, caplog):
    """A written step updated after its job was deleted changes nothing: say so, and a
    later add_step to that job is refused at once instead of being queued and dropped."""
    gone = bjm.add_job("gone")
    step = bjm.add_step(gone, "written")
    bjm.flush()
    bjm.update_step(step, "OK", "too late")  # queued: the step is read, its row exists
    rows.execute("DELETE FROM job_log WHERE job_id = %s", [gone])  # job_log_clear, say
    with caplog.at_level("WARNING", logger="jobmon_core"):
        assert bjm.flush() == 0
    (report,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert f"step(s) {step} of job {gone}" in report
    assert "no longer exists" in report
    other = bjm.add_job("other")  # a queued insert of the gone job teaches the buffer
    bjm.add_step(gone, "queued for a gone job")
    bjm.add_step(other, "fine")
    with caplog.at_level("WARNING", logger="jobmon_core"):
        assert bjm.flush() == 1
    with pytest.raises(JobNotFoundError):
        bjm.add_step(gone, "refused at once")


def test_a_step_id_held_by_another_row_is_never_merged_into_it(bjm, rows, caplog):
    """A first insert that meets an existing step_id is an error, never a silent merge:
    the row of someone else stays as it was, and the other steps are written."""
    job = bjm.add_job("collision")
    mine = bjm.add_step(job, "mine")
    other = bjm.add_step(job, "other")
    bjm.update_step(mine, "OK", "written by me")
    rows.execute(
        "INSERT INTO job_detail (job_id, step_id, action, start_time, status, message)"
        " VALUES (%s, %s, 'somebody else', now(), 'WARNING', 'not yours')",
        [job, mine],
    )
    with caplog.at_level("WARNING", logger="jobmon_core"):
        assert bjm.flush() == 1
    details = rows("job_detail")
    assert [(d["step_id"], d["action"], d["status"], d["message"]) for d in details] == [
        (mine, "somebody else", "WARNING", "not yours"),
        (other, "other", None, None),
    ]
    (report,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert report.levelname == "ERROR"
    assert f"step(s) {mine} of job {job}" in report.getMessage()


def test_close_closes_the_connection_even_when_the_flush_fails(dsn, jm, rows, admin):
    bjm = Jobmon(dsn, schema=jm.schema, buffered=True, flush_interval=30, lock_timeout=0.3)
    job = bjm.add_job("blocked flush")
    bjm.add_step(job, "queued")
    assert bjm._connection.backend_pid is not None
    with admin.transaction():
        rows.execute("LOCK TABLE job_detail IN ACCESS EXCLUSIVE MODE")  # held till the end
        with pytest.raises(LockTimeoutError):
            bjm.close()
        assert bjm._connection.backend_pid is None  # closed all the same
    bjm.close()  # the lock is gone: the queued step is written now
    assert bjm._connection.backend_pid is None
    assert [d["action"] for d in rows("job_detail")] == ["queued"]
    bjm.close()  # closing again is harmless


def test_a_batch_committed_but_unanswered_lands_exactly_once(dsn, schema_name, admin):
    """The retry after a cut finds the rows of its own first attempt: it must accept them
    as its own (same job, action, start time), not drop them as someone else's."""
    rows = Rows(admin, schema_name)
    with cutting_proxy(dsn) as proxy:
        bjm = Jobmon(proxy.dsn, schema=schema_name, buffered=True, flush_interval=30)
        bjm.install()
        job = bjm.add_job("cut batch")
        steps = [bjm.add_step(job, f"step {i}") for i in range(10)]
        for step in steps[:5]:
            bjm.update_step(step, "OK", f"done {step}")
        proxy.cut_after(b"COMMIT")
        assert bjm.flush() == 10
        assert proxy.cuts == 1
        bjm.close()
    details = rows("job_detail")
    assert [d["step_id"] for d in details] == steps
    assert [d["message"] for d in details] == [f"done {s}" for s in steps[:5]] + [None] * 5
