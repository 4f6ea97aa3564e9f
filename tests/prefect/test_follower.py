"""The zero-code mode: the event follower logs unmodified flows, and logs a flow that also
has the hooks once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest
from prefect import flow, task

from jobmon_core import Jobmon
from jobmon_prefect.follower import FLOW_END_GRACE, follow
from jobmon_prefect.runlog import RETRIED, UNFINISHED

from .test_hooks import TRIES, simple_etl, steps, the_job
from .test_runner import ROOT, wait_for

GRACE = 1.0


@pytest.fixture
def follower(logged: Jobmon) -> Iterator[Jobmon]:
    """A follower in a thread of its own, logging into this test's schema."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(follow(stop=stop, ready=ready, grace=GRACE)), daemon=True
    )
    thread.start()
    assert ready.wait(30), "the follower did not subscribe"
    yield logged
    stop.set()
    thread.join(10)


@task(retries=1)
def plain_flaky(key: str) -> str:
    TRIES[key] = TRIES.get(key, 0) + 1
    if TRIES[key] == 1:
        raise ConnectionError("source restarting")
    return "ok"


@task
def plain_step(n: int) -> int:
    return n


@flow
def unmodified(fail: bool, key: str) -> None:
    plain_step(1)
    plain_flaky(key)
    if fail:
        raise ValueError("totals do not match")


def ended(jm: Jobmon, state) -> object:
    def probe():
        job = the_job(jm, state) if _has_job(jm, state) else None
        return job if job is not None and job.end_time is not None else None

    return wait_for("the follower to end the job", probe, timeout=20)


def _has_job(jm: Jobmon, state) -> bool:
    run_key = f"prefect:{state.state_details.flow_run_id}"
    return any(j.run_key == run_key for j in jm.show_job_like(".", 100))


def test_an_unmodified_flow_is_logged_by_the_follower(follower):
    state = unmodified(False, "follow-ok", return_state=True)
    assert state.is_completed()
    job = ended(follower, state)
    assert (job.job_name, job.status) == ("UNMODIFIED", "OK")
    assert sorted(steps(follower, job.job_id)) == [
        ("plain_flaky [try 1]", "WARNING", RETRIED.format(next=2)),
        ("plain_flaky [try 2]", "OK", None),
        ("plain_step [try 1]", "OK", None),
    ]


def test_a_failed_unmodified_flow_fails_its_job(follower):
    state = unmodified(True, "follow-fail", return_state=True)
    assert state.is_failed()
    job = ended(follower, state)
    assert job.status == "CRITICAL"
    got = steps(follower, job.job_id)
    assert ("flow run failed", "CRITICAL", "ValueError: totals do not match") in got
    assert not any(message == UNFINISHED.format(state="Failed") for _, _, message in got)


@pytest.fixture
def follower_process(logged: Jobmon, dsn: str, prefect_api: str, tmp_path) -> Iterator[Jobmon]:
    """``python -m jobmon_prefect.follower`` in a process of its own, as deployed: the hooks
    in this process and the follower there write the same runs."""
    log_path = tmp_path / "follower.log"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "JOBMON_DSN": dsn}
    env["JOBMON_SCHEMA"] = logged.schema
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobmon_prefect.follower"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                "the follower process to subscribe",
                lambda: "following the Prefect events" in log_path.read_text(),
                timeout=60,
            )
            yield logged
        finally:
            process.terminate()
            process.wait(15)


def test_a_flow_with_hooks_is_logged_once(follower_process):
    jm = follower_process
    state = simple_etl(return_state=True)
    job = ended(jm, state)
    assert job.status == "OK"
    time.sleep(FLOW_END_GRACE + 1)  # the follower's own end of the run comes after its grace
    assert steps(jm, job.job_id) == [("extract [try 1]", "OK", None)] * 2
    key = f"prefect:{state.state_details.flow_run_id}"
    assert [j.job_id for j in jm.show_job_like("SIMPLE-ETL", 100) if j.run_key == key] == [
        job.job_id
    ]


@flow(name="never_run_here")
def never_run_here() -> None:
    """Only its runs are needed: the API creates them and sets their states."""


def test_the_follower_fails_the_jobs_of_runs_cancelled_or_crashed_through_the_api(follower):
    """Runs whose end the server decides (a cancellation through the API, a crash reported
    by a runner): the follower logs them with no process of the flow's."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed, Running

    ends = {"cancelled": Cancelled(message="cancelled by a test"), "crashed": Crashed()}
    run_ids = {}
    with get_client(sync_client=True) as client:
        for name, end in ends.items():
            flow_run = client.create_flow_run(never_run_here, name=name)
            client.set_flow_run_state(flow_run.id, Running(), force=True)
            client.set_flow_run_state(flow_run.id, end, force=True)
            run_ids[name] = flow_run.id
    for name, flow_run_id in run_ids.items():
        job = wait_for(f"the {name} run's job to end", partial(_ended_job, follower, flow_run_id))
        assert (job.job_name, job.status) == ("NEVER_RUN_HERE", "CRITICAL")
        (end,) = steps(follower, job.job_id)
        assert end[:2] == (f"flow run {name}", "CRITICAL")


def _ended_job(jm: Jobmon, flow_run_id: object) -> object:
    for job in jm.show_job_like("NEVER_RUN_HERE", 10):
        if job.run_key == f"prefect:{flow_run_id}" and job.end_time is not None:
            return job
    return None


def test_the_follower_refuses_to_start_without_a_prefect_api():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "jobmon_prefect.follower"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "PREFECT_API_URL is not set" in out.stderr


@pytest.fixture
def tag_follower(logged: Jobmon) -> Iterator[Jobmon]:
    """A follower that logs only runs tagged ``jobmon`` (a deployment's opt-in)."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(follow(tag="jobmon", stop=stop, ready=ready, grace=GRACE)),
        daemon=True,
    )
    thread.start()
    assert ready.wait(30), "the follower did not subscribe"
    yield logged
    stop.set()
    thread.join(10)


def test_the_follower_logs_only_the_runs_of_its_tag(tag_follower):
    from prefect import tags

    untagged = unmodified(False, "untagged", return_state=True)
    with tags("jobmon"):
        tagged = unmodified(False, "tagged", return_state=True)
    assert ended(tag_follower, tagged).status == "OK"
    time.sleep(GRACE + 0.5)
    assert not _has_job(tag_follower, untagged)
