"""The hooks, for real: flows run against a real Prefect API, logged into a real schema."""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

from prefect import State, flow, task
from prefect.cache_policies import INPUTS

from jobmon_core import Jobmon
from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks, with_jobmon_hooks
from jobmon_prefect.runlog import CACHE_HIT, RETRIED, UNFINISHED

TRIES: dict[str, int] = {}


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def the_job(jm: Jobmon, state: State[Any]) -> Any:
    (job,) = [j for j in jm.show_job_like(".", 100) if j.run_key == f"prefect:{flow_run_id(state)}"]
    return job


def steps(jm: Jobmon, job_id: int) -> list[tuple[str, str | None, str | None]]:
    """(action without the task run's random suffix, status, message), in order."""
    return [(_plain(s.action), s.status, s.message) for s in jm.show_detail(job_id)]


def _plain(action: str) -> str:
    name, _, rest = action.partition(" ")
    base = name.rsplit("-", 1)[0] if "-" in name else name
    return f"{base} {rest}".strip()


@task(**jobmon_task_hooks())
def extract(n: int) -> int:
    return n


@task(retries=1, **jobmon_task_hooks())
def flaky(key: str, failures: int) -> str:
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] <= failures:
        raise ConnectionError(f"database restarting ({key})")
    return "ok"


@flow(**jobmon_flow_hooks())
def simple_etl() -> int:
    return extract(1) + extract(2)


def test_a_successful_flow_run_is_one_ok_job_with_a_step_per_try(logged):
    state = simple_etl(return_state=True)
    assert state.is_completed()
    job = the_job(logged, state)
    assert (job.job_name, job.status) == ("SIMPLE-ETL", "OK")
    assert steps(logged, job.job_id) == [("extract [try 1]", "OK", None)] * 2


@flow(**jobmon_flow_hooks())
def retrying(key: str, failures: int) -> str:
    return flaky(key, failures)


def test_a_task_retried_then_ok(logged):
    state = retrying("retried-ok", 1, return_state=True)
    assert state.is_completed()
    job = the_job(logged, state)
    assert job.status == "OK"
    assert steps(logged, job.job_id) == [
        ("flaky [try 1]", "WARNING", RETRIED.format(next=2)),
        ("flaky [try 2]", "OK", None),
    ]


def test_a_task_failing_after_its_retries_fails_the_job(logged):
    state = retrying("always", 5, return_state=True)
    assert state.is_failed()
    job = the_job(logged, state)
    assert job.status == "CRITICAL"
    got = steps(logged, job.job_id)
    assert got[:2] == [
        ("flaky [try 1]", "WARNING", RETRIED.format(next=2)),
        ("flaky [try 2]", "CRITICAL", "ConnectionError: database restarting (always)"),
    ]
    assert got[2][:2] == ("flow run failed", "CRITICAL")
    assert "database restarting" in (got[2][2] or "")


@flow(**jobmon_flow_hooks())
def failing_flow() -> None:
    extract(1)
    raise ValueError("totals do not match")


def test_a_failing_flow_fails_its_job_with_the_reason(logged):
    state = failing_flow(return_state=True)
    assert state.is_failed()
    job = the_job(logged, state)
    assert job.status == "CRITICAL"
    assert steps(logged, job.job_id) == [
        ("extract [try 1]", "OK", None),
        ("flow run failed", "CRITICAL", "ValueError: totals do not match"),
    ]


@flow(retries=1, **jobmon_flow_hooks())
def retried_flow(key: str) -> str:
    TRIES[key] = TRIES.get(key, 0) + 1
    extract(TRIES[key])
    if TRIES[key] == 1:
        raise RuntimeError("first try fails")
    return "ok"


def test_a_retried_flow_run_stays_one_job(logged):
    state = retried_flow("flow-retry", return_state=True)
    assert state.is_completed()
    job = the_job(logged, state)
    assert job.status == "OK"
    assert steps(logged, job.job_id) == [
        ("extract [try 1]", "OK", None),
        ("flow run [try 1]", "WARNING", "the flow run failed and is retried as try 2"),
        ("extract [try 1]", "OK", None),
    ]


@flow(**jobmon_flow_hooks())
def child(n: int) -> int:
    return extract(n)


@flow(**jobmon_flow_hooks())
def parent() -> int:
    return child(1) + child(2)


def test_a_subflow_is_a_job_of_its_own(logged):
    state = parent(return_state=True)
    assert state.is_completed()
    jobs = {j.job_name: j for j in logged.show_job_like("^(PARENT|CHILD)$", 10)}
    assert the_job(logged, state).job_name == "PARENT"
    children = logged.show_job("child")
    assert [j.status for j in children] == ["OK", "OK"]
    assert len({j.run_key for j in children}) == 2
    assert jobs["PARENT"].status == "OK"
    for each in children:
        assert steps(logged, each.job_id) == [("extract [try 1]", "OK", None)]


@task(**jobmon_task_hooks())
def square(n: int) -> int:
    time.sleep(0.05)
    return n * n


@flow(**jobmon_flow_hooks())
def fan_out() -> int:
    futures = square.map([1, 2, 3])
    extra = square.submit(4)
    return sum(f.result() for f in futures) + extra.result()


def test_submit_and_map_log_from_worker_threads(logged):
    state = fan_out(return_state=True)
    assert state.is_completed()
    assert state.result() == 30
    job = the_job(logged, state)
    assert job.status == "OK"
    assert steps(logged, job.job_id) == [("square [try 1]", "OK", None)] * 4


@task(timeout_seconds=0.5, **jobmon_task_hooks())
def slow() -> None:
    time.sleep(3)


@flow(**jobmon_flow_hooks())
def timing_out() -> None:
    slow()


@flow(timeout_seconds=0.5, **jobmon_flow_hooks())
def slow_flow() -> None:
    time.sleep(3)


def test_a_task_timeout_is_a_critical_step(logged):
    state = timing_out(return_state=True)
    assert state.is_failed()
    job = the_job(logged, state)
    assert job.status == "CRITICAL"
    (timed_out, end) = logged.show_detail(job.job_id)
    assert (_plain(timed_out.action), timed_out.status) == ("slow [try 1]", "CRITICAL")
    assert "timeout" in (timed_out.message or "").lower()
    assert end.action == "flow run failed"


def test_a_flow_timeout_fails_the_job(logged):
    state = slow_flow(return_state=True)
    assert state.is_failed()
    assert state.name == "TimedOut"
    job = the_job(logged, state)
    assert job.status == "CRITICAL"
    ((action, status, message),) = steps(logged, job.job_id)
    assert (action, status) == ("flow run failed", "CRITICAL")
    assert "timeout" in (message or "").lower()


@task(cache_policy=INPUTS, **jobmon_task_hooks())
def cached(n: int) -> int:
    return n + 1


@flow(**jobmon_flow_hooks())
def caching(n: int) -> int:
    return cached(n) + cached(n)


def test_a_cache_hit_is_an_ok_step_that_says_so(logged):
    n = time.time_ns()  # inputs no earlier run has cached
    state = caching(n, return_state=True)
    assert state.is_completed()
    job = the_job(logged, state)
    assert steps(logged, job.job_id) == [
        ("cached [try 1]", "OK", None),
        ("cached [try 1]", "OK", CACHE_HIT),
    ]


SEEN: list[str] = []


def their_hook(flow: Any, flow_run: Any, state: Any) -> None:
    SEEN.append(state.name)


@flow(on_completion=[their_hook])
def someone_elses() -> int:
    return 1


def test_hooks_added_to_a_flow_someone_else_defined_keep_theirs(logged):
    monitored = with_jobmon_hooks(someone_elses)
    assert with_jobmon_hooks(monitored) is monitored  # added once
    SEEN.clear()
    state = monitored(return_state=True)
    assert state.is_completed()
    assert SEEN == ["Completed"]
    assert the_job(logged, state).status == "OK"
    assert someone_elses.on_running_hooks == []  # the original is unchanged


def test_an_unreachable_jobmon_costs_one_warning_and_the_flow_succeeds(logged, monkeypatch, caplog):
    monkeypatch.setenv("JOBMON_DSN", "postgresql://nobody@127.0.0.1:1/nowhere")
    caplog.set_level(logging.WARNING, logger="jobmon_prefect")
    started = time.monotonic()
    state = fan_out(return_state=True)
    elapsed = time.monotonic() - started
    assert state.is_completed()
    warnings = [r for r in caplog.records if r.name == "jobmon_prefect"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cannot reach the jobmon database" in warnings[0].getMessage()
    assert elapsed < 5


def test_unfinished_tries_are_closed_when_the_flow_run_crashes(logged):
    """A try whose end no hook reports (its process was killed) is closed with the job."""
    from jobmon_prefect.runlog import RunLogger

    job_id = logged.add_job("crashing", run_key="prefect:00000000-0000-0000-0000-00000000c0de")
    logged.add_step(job_id, "load-abc [try 1]", step_key="x#1")

    class Crashed:
        type = "CRASHED"
        name = "Crashed"
        message = "Process exited with status code: -9"
        data = None

    class Run:
        id = "00000000-0000-0000-0000-00000000c0de"
        name = "crashing-run"

    RunLogger().flow_state(None, Run(), Crashed())
    assert [j.status for j in logged.show_job("crashing")] == ["CRITICAL"]
    assert steps(logged, job_id) == [
        ("load [try 1]", "CRITICAL", UNFINISHED.format(state="Crashed")),
        ("flow run crashed", "CRITICAL", "Process exited with status code: -9"),
    ]


@task(**jobmon_task_hooks())
async def fetch(n: int) -> int:
    return n


@flow(**jobmon_flow_hooks())
async def async_etl() -> int:
    return await fetch(1) + await fetch(2)


def test_an_async_flow_is_logged_the_same_way(logged):
    import asyncio

    state = asyncio.run(async_etl(return_state=True))
    assert state.is_completed()
    job = the_job(logged, state)
    assert (job.job_name, job.status) == ("ASYNC-ETL", "OK")
    assert steps(logged, job.job_id) == [("fetch [try 1]", "OK", None)] * 2
