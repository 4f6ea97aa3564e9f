"""Buffered step logging: fast, flushed at job end, on a timer, at exit; losses as stated."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jobmon_core import InvalidArgumentError, Jobmon, JobNotFoundError, StepNotFoundError


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
