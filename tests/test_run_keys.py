"""Run keys: one job per orchestrator run and one step per task try, from any process."""

from __future__ import annotations

import multiprocessing

import pytest

from jobmon_core import InvalidArgumentError, Jobmon, JobNotFoundError


def _get_or_create(dsn: str, schema: str, barrier) -> tuple[int, int]:  # child process
    jm = Jobmon(dsn, schema=schema)
    barrier.wait()
    job_id = jm.add_job("my_etl", run_key="airflow:my_etl/manual__1")
    step_id = jm.add_step(job_id, "extract [try 1]", step_key="extract[-1]#1")
    jm.close()
    return job_id, step_id


def test_concurrent_processes_share_one_job_and_one_step(dsn, jm, rows):
    n = 8
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            results = pool.starmap(_get_or_create, [(dsn, jm.schema, barrier)] * n)
    assert len(set(results)) == 1
    (job,) = rows("job_log")
    assert (job["job_name"], job["run_key"]) == ("MY_ETL", "airflow:my_etl/manual__1")
    (step,) = rows("job_detail")
    assert (step["action"], step["step_key"]) == ("extract [try 1]", "extract[-1]#1")


def test_keys_are_per_run_and_per_job(jm, rows):
    a = jm.add_job("etl", run_key="r1")
    assert jm.add_job("etl", run_key="r1") == a
    b = jm.add_job("etl", run_key="r2")
    assert b != a
    assert jm.add_step(a, "t", step_key="t#1") == jm.add_step(a, "t", step_key="t#1")
    assert jm.add_step(a, "t", step_key="t#2") != jm.add_step(a, "t", step_key="t#1")
    assert jm.add_step(b, "t", step_key="t#1") != jm.add_step(a, "t", step_key="t#1")
    unkeyed = jm.add_job("etl")
    assert unkeyed not in (a, b)
    assert len(rows("job_log")) == 3
    assert len(rows("job_detail")) == 3


def test_a_keyed_job_is_monitored_like_any_other(jm, rows):
    for run in range(3):
        jm.fail_job(jm.add_job("nightly", run_key=f"run {run}"))
    assert jm.check_job_status()[0].alert_text == "3 consecutive CRITICAL runs"
    assert jm.show_job("nightly")[0].run_key == "run 2"


def test_bad_keys_are_refused(jm):
    with pytest.raises(InvalidArgumentError, match="run_key must not be empty"):
        jm.add_job("x", run_key="")
    with pytest.raises(InvalidArgumentError, match="step_key contains a NUL"):
        jm.add_step(1, "x", step_key="a\x00")
    with pytest.raises(JobNotFoundError):
        jm.add_step(999999, "x", step_key="k")
