"""The zero-code mode: the event follower logs unmodified flows, and logs a flow that also
has the hooks once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from prefect import flow, task

from jobmon_core import Jobmon
from jobmon_prefect.follower import follow
from jobmon_prefect.runlog import RETRIED, UNFINISHED

from .test_hooks import TRIES, simple_etl, steps, the_job
from .test_runner import wait_for

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


def test_a_flow_with_hooks_is_logged_once(follower):
    state = simple_etl(return_state=True)
    job = ended(follower, state)
    assert job.status == "OK"
    time.sleep(GRACE + 0.5)  # the follower's own end of the run comes after its grace
    assert steps(follower, job.job_id) == [("extract [try 1]", "OK", None)] * 2
    key = f"prefect:{state.state_details.flow_run_id}"
    assert [j.job_id for j in follower.show_job_like("SIMPLE-ETL", 100) if j.run_key == key] == [
        job.job_id
    ]


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
