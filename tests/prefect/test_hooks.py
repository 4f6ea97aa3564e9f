"""The hooks, for real: flows run against a real Prefect API, logged into a real schema."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, cast
from uuid import UUID

from prefect import State, flow, task
from prefect.cache_policies import INPUTS

from jobmon_core import Jobmon
from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks, runlog, with_jobmon_hooks
from jobmon_prefect.background import writer
from jobmon_prefect.destination import destination
from jobmon_prefect.runlog import ABANDONED, CACHE_HIT, RETRIED, UNFINISHED, RunLogger

TRIES: dict[str, int] = {}


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def the_job(jm: Jobmon, state: State[Any]) -> Any:
    (job,) = [j for j in jm.show_job_like(".", 100) if j.run_key == f"prefect:{flow_run_id(state)}"]
    return job


def steps(jm: Jobmon, job_id: int) -> list[tuple[str, str | None, str | None]]:
    """(action, status, message) of each step, in order."""
    return [(s.action, s.status, s.message) for s in jm.show_detail(job_id)]


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
    assert (timed_out.action, timed_out.status) == ("slow [try 1]", "CRITICAL")
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
    """A try whose end no hook reports (its process was killed) is closed with the job: a
    real flow run, crashed as the runner reports it (its ``on_crashed`` hook, run by the
    runner after the flow's process died, is handed a Crashed state)."""
    from prefect.states import Crashed

    flow_run, task_run = real_runs()
    job_id = RunLogger().job_id(destination(), str(flow_run.id), "crashing")
    logged.add_step(job_id, "load [try 1]", step_key=f"{task_run.id}#1")
    crashed = Crashed(message="Process exited with status code: -9")
    RunLogger().flow_state(crashing, flow_run, crashed)
    assert [j.status for j in logged.show_job("crashing")] == ["CRITICAL"]
    assert steps(logged, job_id) == [
        ("load [try 1]", "CRITICAL", UNFINISHED.format(state="Crashed")),
        ("flow run crashed", "CRITICAL", "Process exited with status code: -9"),
    ]


@task
def context_probe() -> Any:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    assert context is not None
    return context.task_run


@flow(name="crashing")
def crashing() -> Any:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    assert context is not None
    assert context.flow_run is not None
    return context.flow_run, context_probe()


def real_runs() -> tuple[Any, Any]:
    """A real flow run and one of its task runs, as Prefect hands them to hooks (the flow
    has no jobmon hooks: the test writes what it needs)."""
    runs: tuple[Any, Any] = cast(Any, crashing)()  # Prefect's overloads lose the type
    return runs


GATE, STARTED = threading.Event(), threading.Event()


@task(**jobmon_task_hooks())
def released() -> None:
    STARTED.set()
    GATE.wait(10)


@flow(**jobmon_flow_hooks())
def forgets_a_future() -> None:
    released.submit()  # never waited for
    STARTED.wait(10)
    time.sleep(0.2)  # the try's start is queued before the flow's end


def test_a_completed_flow_run_closes_the_tries_nobody_waited_for(logged):
    """The flow's Completed hook closes a try still open; Prefect waits for the try only
    after that hook, and the try's own end, reported later, is the last word."""
    GATE.clear()
    STARTED.clear()
    seen: list[tuple[str, str | None, str | None]] = []

    def release_once_abandoned() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not seen:
            for job in logged.show_job("forgets-a-future", 1):
                seen.extend(s for s in steps(logged, job.job_id) if s[2] == ABANDONED)
            time.sleep(0.1)
        GATE.set()

    watcher = threading.Thread(target=release_once_abandoned)
    watcher.start()
    try:
        state = forgets_a_future(return_state=True)
    finally:
        GATE.set()
        watcher.join()
    assert state.is_completed()
    assert seen == [("released [try 1]", "WARNING", ABANDONED)]
    writer.drain()  # the try's own end came after the flow's end had been written
    job = the_job(logged, state)
    assert job.status == "OK"
    assert steps(logged, job.job_id) == [("released [try 1]", "OK", None)]


@flow
def without_flow_hooks() -> int:
    return extract(1) + extract(2)


def test_task_hooks_never_start_a_job_and_warn_once(logged, monkeypatch, caplog):
    monkeypatch.setattr(runlog, "_warned_no_job", threading.Event())
    caplog.set_level(logging.WARNING, logger="jobmon_prefect")
    first = without_flow_hooks(return_state=True)
    second = without_flow_hooks(return_state=True)
    assert first.is_completed()
    assert second.is_completed()
    writer.drain()
    assert logged.show_job_like(".", 10) == []  # no job that nothing would ever end
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobmon_prefect"]
    assert len(warnings) == 1, warnings
    assert "jobmon_flow_hooks" in warnings[0]
    assert "follower" in warnings[0]


@task(**jobmon_task_hooks())
def outage_starts() -> None:
    """The database becomes unreachable as far as this process knows: the back-off starts."""
    writer.drain()  # what came before is written
    destination().guard.back_off("a test", "cannot reach the jobmon database", "simulated")


@flow(**jobmon_flow_hooks())
def interrupted() -> None:
    extract(1)
    outage_starts()
    extract(2)


def test_a_flow_run_end_is_written_during_the_back_off(logged):
    """After an outage, every write is skipped for the back-off, but a flow run's end still
    makes its one attempt: the job does not stay open for ever."""
    state = interrupted(return_state=True)
    assert state.is_completed()
    job = the_job(logged, state)
    assert (job.status, job.end_time is not None) == ("OK", True)
    assert steps(logged, job.job_id) == [  # the writes in between were skipped
        ("extract [try 1]", "OK", None),
        ("outage_starts [try 1]", "WARNING", ABANDONED),
    ]
    assert destination().guard.in_backoff


def test_a_second_observer_never_rewrites_a_finished_try(logged):
    """The follower (exclusive=False) next to the hooks of the same process: a try the
    hooks started and someone finished is left as it is, even though the hooks remember
    its step id."""
    from prefect.states import Completed, Running

    flow_run, task_run = real_runs()
    hooks = RunLogger(background=False)
    first_try = flow_run.model_copy(update={"run_count": 0})  # as its on_running hook sees it
    hooks.flow_state(crashing, first_try, Running())
    hooks.task_state(context_probe, task_run, Running())
    job = the_job_of(logged, flow_run.id)
    (step,) = logged.show_detail(job.job_id)
    logged.update_step(step.step_id, "CRITICAL", "ended by the first observer")
    RunLogger(exclusive=False, background=False).task_state(context_probe, task_run, Completed())
    assert steps(logged, job.job_id) == [
        ("context_probe [try 1]", "CRITICAL", "ended by the first observer")
    ]


def the_job_of(jm: Jobmon, flow_run_id: object) -> Any:
    (job,) = [j for j in jm.show_job_like(".", 100) if j.run_key == f"prefect:{flow_run_id}"]
    return job


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
