"""Runs served by a real ``flow.serve()`` runner: a run killed with SIGKILL (the runner's
``on_crashed`` hook, run in the runner process, closes its job) and one cancelled through
the API (the runner's ``on_cancellation`` hook)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling

from jobmon_core import Jobmon, JobRecord
from jobmon_prefect.runlog import UNFINISHED

SERVED = Path(__file__).with_name("served.py")
ROOT = Path(__file__).parents[2]
T = TypeVar("T")
pytestmark = pytest.mark.e2e  # a runner process per module: CI runs these once, not per server


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 45.0) -> T:
    """Poll ``probe`` every 0.2 s until it returns something, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def served_jm(dsn: str) -> Iterator[Jobmon]:
    """A jobmon schema of this module's own: one runner serves all its tests."""
    jobmon = Jobmon(dsn, schema="jm_test_prefect_runner")
    jobmon.install()
    yield jobmon
    jobmon.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA jm_test_prefect_runner CASCADE")


@pytest.fixture(scope="module")
def runner(
    served_jm: Jobmon, dsn: str, prefect_api: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """``served.py`` serving its flow, logging into the module's schema; stopped after."""
    tmp_path = tmp_path_factory.mktemp("runner")
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "JOBMON_DSN": dsn,
        "JOBMON_SCHEMA": served_jm.schema,
    }
    log_file = (tmp_path / "runner.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(SERVED)], cwd=ROOT, env=env, stdout=log_file, stderr=log_file
    )
    try:
        wait_for("the runner to register its deployment", deployment_exists)
        yield tmp_path
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log_file.close()


def deployment_exists() -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name("served_sleeper/sleeper")
        except ObjectNotFound:
            return False
    return True


def start_run(tmp_path: Path, name: str) -> tuple[UUID, int]:
    """Start a run of the served flow; return its id and its process id, once it runs."""
    pid_file = tmp_path / f"{name}.pid"
    flow_run = run_deployment(
        "served_sleeper/sleeper", parameters={"pid_file": str(pid_file)}, timeout=0
    )
    assert isinstance(flow_run, FlowRun)
    pid = wait_for(f"run {name} to start", lambda: pid_file.exists() and pid_file.read_text())
    return flow_run.id, int(str(pid))


def finished_job(jm: Jobmon, flow_run_id: UUID) -> JobRecord:
    def probe() -> JobRecord | None:
        for job in jm.show_job("served_sleeper", 10):
            if job.run_key == f"prefect:{flow_run_id}" and job.end_time is not None:
                return job
        return None

    return wait_for(f"the job of flow run {flow_run_id} to end", probe)


def test_a_killed_run_is_closed_by_the_runners_crash_hook(served_jm, runner):
    flow_run_id, pid = start_run(runner, "killed")
    os.kill(pid, signal.SIGKILL)
    job = finished_job(served_jm, flow_run_id)
    assert job.status == "CRITICAL"
    (held, end) = served_jm.show_detail(job.job_id)
    assert held.action == "hold [try 1]"
    assert (held.status, held.message) == ("CRITICAL", UNFINISHED.format(state="Crashed"))
    assert (end.action, end.status) == ("flow run crashed", "CRITICAL")
    assert "-9" in (end.message or "")


def test_a_run_cancelled_through_the_api_is_closed_by_the_cancellation_hook(served_jm, runner):
    flow_run_id, _ = start_run(runner, "cancelled")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Cancelling())
    job = finished_job(served_jm, flow_run_id)
    assert job.status == "CRITICAL"
    (held, end) = served_jm.show_detail(job.job_id)
    assert held.status == "CRITICAL"
    assert (end.action, end.status) == ("flow run cancelled", "CRITICAL")
