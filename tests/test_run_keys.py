"""Run keys: one job per orchestrator run and one step per task try, from any process."""

from __future__ import annotations

import multiprocessing

import pytest
from psycopg import sql

from jobmon_core import InvalidArgumentError, Jobmon, JobNotFoundError
from jobmon_core.plugins import hookimpl, new_plugin_manager


class StartedJobs:
    """A plugin that writes down the jobs it heard started."""

    def __init__(self) -> None:
        self.started: list[tuple[int, str]] = []

    @hookimpl
    def jobmon_job_started(self, job_id: int, job_name: str) -> None:
        self.started.append((job_id, job_name))


def listening(dsn: str, schema: str) -> tuple[Jobmon, StartedJobs]:
    plugin = StartedJobs()
    manager = new_plugin_manager(load_entry_points=False)
    manager.register(plugin)
    return Jobmon(dsn, schema=schema, plugins=manager), plugin


def _get_or_create(dsn: str, schema: str, barrier) -> tuple[int, int, int]:  # child process
    jm, plugin = listening(dsn, schema)
    barrier.wait()
    job_id = jm.add_job("my_etl", run_key="airflow:my_etl/manual__1")
    step_id = jm.add_step(job_id, "extract [try 1]", step_key="extract[-1]#1")
    jm.close()
    return job_id, step_id, len(plugin.started)


def test_concurrent_processes_share_one_job_and_one_step(dsn, jm, rows):
    n = 8
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            results = pool.starmap(_get_or_create, [(dsn, jm.schema, barrier)] * n)
    assert len({(job, step) for job, step, _ in results}) == 1
    assert sum(started for _, _, started in results) == 1  # only the creator told its plugins
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


def test_job_started_is_heard_once_per_keyed_job(dsn, jm, rows):
    """Issue #12: the hook never fired for a job with a run key (every Airflow run). It fires
    for the call that created the job, and not for the calls that find it again."""
    hooked, plugin = listening(dsn, jm.schema)
    first = hooked.add_job("etl", run_key="airflow:etl/run_1@a")
    assert hooked.add_job("etl", run_key="airflow:etl/run_1@a") == first
    assert jm.add_job("etl", run_key="airflow:etl/run_1@a") == first  # another process
    second = hooked.add_job("etl", run_key="airflow:etl/run_1@b")
    hooked.close_job(first)
    assert hooked.add_job("etl", run_key="airflow:etl/run_1@a") == first  # a late write
    assert plugin.started == [(first, "etl"), (second, "etl")]
    hooked.close()


def test_the_sql_function_says_whether_it_created_the_job(admin, jm):
    def call(function: str) -> tuple:
        row = admin.execute(
            sql.SQL("SELECT * FROM {}(%s, %s, NULL, NULL)").format(
                sql.Identifier(jm.schema, function)
            ),
            ["etl", "airflow:etl/run_1@a"],
        ).fetchone()
        assert row is not None
        return tuple(row)

    (job_id, created) = call("find_or_add_run_job")
    assert created is True
    assert call("find_or_add_run_job") == (job_id, False)
    assert call("add_run_job") == (job_id,)  # version 4's function: the same job
