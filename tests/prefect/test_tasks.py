"""jobmon_check and jobmon_wait_for_run in real flow runs; the block, saved and loaded."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from prefect import flow

from jobmon_core import Jobmon
from jobmon_prefect import JobmonCheckFailed, JobmonPostgres, jobmon_check, jobmon_wait_for_run
from jobmon_prefect.blocks import load_block


@flow
def monitoring(fail_level: int = 3) -> list[dict]:
    return jobmon_check(fail_level=fail_level)


def fail_runs(jm: Jobmon, name: str, times: int) -> None:
    for _ in range(times):
        jm.fail_job(jm.add_job(name))


def test_the_check_passes_and_returns_the_alerts_when_all_is_ok(logged):
    jm = logged
    jm.close_job(jm.add_job("nightly load"))
    state = monitoring(return_state=True)
    assert state.is_completed()
    (alert,) = state.result()
    assert alert["alert_code"] == 1
    assert alert["job_name"] is None


def test_the_check_fails_the_flow_on_a_critical_job(logged):
    fail_runs(logged, "nightly load", 3)  # three failures in a row: CRITICAL
    state = monitoring(return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, JobmonCheckFailed)
    assert "NIGHTLY LOAD" in str(error)


def test_warnings_pass_unless_fail_level_is_2_and_are_logged_as_warnings(logged, caplog):
    logged.configure_check("late job", warn=timedelta(seconds=1), error=timedelta(hours=1))
    logged.close_job(logged.add_job("late job"))
    time.sleep(1.2)
    caplog.set_level(logging.WARNING)
    assert monitoring(return_state=True).is_completed()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("jobmon check:" in m and "LATE JOB" in m for m in warned), warned
    assert monitoring(fail_level=2, return_state=True).is_failed()


@flow
def looks_twice(jm_schema: str) -> str:
    """The same check twice in one flow run, with the job failing in between: the second
    look must not be a cached copy of the first (result persistence on)."""
    jobmon_check()
    with Jobmon(os.environ["JOBMON_DSN"], schema=jm_schema) as jm:
        fail_runs(jm, "nightly load", 3)
    jobmon_check()
    return "not reached"


def test_the_check_is_never_answered_from_the_cache(logged):
    from prefect.settings import PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings

    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
        state = looks_twice(logged.schema, return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), JobmonCheckFailed)


@flow
def waiting(job_name: str, since: datetime) -> dict:
    return jobmon_wait_for_run(job_name, since=since, poll_interval=0.2, timeout=20)


def finish_later(jm: Jobmon, name: str, ok: bool) -> threading.Thread:
    def run() -> None:
        job_id = jm.add_job(name)
        time.sleep(0.5)
        jm.close_job(job_id) if ok else jm.fail_job(job_id)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_wait_returns_when_the_next_run_finishes_ok(logged):
    fail_runs(logged, "upstream", 1)  # an older failure does not count
    since = datetime.now(UTC)
    thread = finish_later(logged, "upstream", ok=True)
    state = waiting("upstream", since, return_state=True)
    thread.join()
    assert state.is_completed()
    assert state.result()["status"] == "OK"


def test_the_wait_fails_at_once_when_the_run_failed(logged):
    since = datetime.now(UTC)
    thread = finish_later(logged, "upstream", ok=False)
    started = time.monotonic()
    state = waiting("upstream", since, return_state=True)
    thread.join()
    assert state.is_failed()
    assert time.monotonic() - started < 10
    assert "failed" in str(state.result(raise_on_failure=False))


def test_a_saved_block_is_where_the_hooks_log(logged, dsn, monkeypatch):
    from .test_hooks import simple_etl, the_job

    JobmonPostgres(dsn=dsn, schema_name=logged.schema).save("jobmon-test", overwrite=True)
    assert "**" in repr(load_block("jobmon-test").dsn)  # a secret: never shown
    monkeypatch.setenv("JOBMON_DSN", "postgresql://nobody@127.0.0.1:1/nowhere")  # not used
    monkeypatch.setenv("JOBMON_PREFECT_BLOCK", "jobmon-test")
    state = simple_etl(return_state=True)
    assert the_job(logged, state).status == "OK"


def test_the_block_loads_by_slug_in_a_process_that_never_imported_it(logged, dsn, prefect_api):
    JobmonPostgres(dsn=dsn, schema_name="somewhere").save("by-slug", overwrite=True)
    code = (
        "import sys; from prefect.blocks.core import Block; "
        "assert 'jobmon_prefect' not in sys.modules; "
        "block = Block.load('jobmon-postgres/by-slug'); "
        "print(type(block).__name__, block.schema_name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**__import__("os").environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["JobmonPostgres", "somewhere"]


def test_a_missing_block_costs_one_warning_and_the_flow_succeeds(logged, monkeypatch, caplog):
    from .test_hooks import fan_out

    monkeypatch.setenv("JOBMON_PREFECT_BLOCK", "no-such-block")
    caplog.set_level(logging.WARNING, logger="jobmon_prefect")
    state = fan_out(return_state=True)
    assert state.is_completed()
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobmon_prefect"]
    assert len(warnings) == 1, warnings
    assert "block 'no-such-block' cannot be loaded" in warnings[0]


def test_the_wait_gives_up_after_its_timeout(logged):
    @flow
    def impatient() -> dict:
        return jobmon_wait_for_run("never runs", poll_interval=0.2, timeout=0.5)

    started = time.monotonic()
    state = impatient(return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), TimeoutError)
    assert time.monotonic() - started < 10
