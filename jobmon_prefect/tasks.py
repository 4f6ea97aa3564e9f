"""Prefect tasks for monitoring: a check that fails the flow on CRITICAL, and a wait for a
job's next run.

    from jobmon_prefect import jobmon_check, jobmon_wait_for_run

    @flow
    def monitoring():
        jobmon_wait_for_run("nightly load")        # fails at once if that run failed
        jobmon_check(history="3 days")             # fails on a CRITICAL alert

They open a session of their own on the destination (:mod:`jobmon_prefect.destination`)
and close it when they end. Unlike the hooks, they raise when jobmon cannot be reached: a
monitoring task that could not look is a failure, not a pass.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from jobmon_core import InvalidArgumentError, JobmonError
from jobmon_core.check_tasks import (
    alerts_table,
    as_datetime,
    as_history,
    check_fail_level,
    failing,
    problems_text,
)

from .destination import open_jobmon

DEFAULT_POLL_INTERVAL = 30.0
DEFAULT_WAIT_TIMEOUT = 6 * 3600.0


class JobmonCheckFailed(JobmonError):
    """The check found an alert at or above ``fail_level``, or the awaited run failed."""


@task(name="jobmon-check", retries=0, cache_policy=NO_CACHE)  # a fresh look each time
def jobmon_check(
    history: timedelta | str | float | None = None,
    fail_level: int = 3,
    block: str | None = None,
) -> list[dict[str, Any]]:
    """Run ``check_job_status`` and return the alerts (dicts: ``alert_code``,
    ``alert_status``, ``job_name``, ``alert_text``); raise :class:`JobmonCheckFailed`,
    failing the task and so the flow, when an alert reaches ``fail_level`` (default 3,
    CRITICAL; custom codes above 3 count). Every problem found is logged as a warning of
    the task run; those below ``fail_level`` (warnings, by default) pass. Levels are
    shared with ``jobmon check --notify`` (the schema's ``job_alert_state``), so a notifier
    plugin hears each flip once."""
    level = check_fail_level(fail_level)
    window = as_history(history)
    logger = get_run_logger()
    with open_jobmon(block) as jobmon:
        alerts = jobmon.check_job_status(window, shared_state=True)
    logger.info("jobmon check:\n%s", alerts_table(alerts))
    bad = failing(alerts, level)
    problems = [a for a in alerts if not a.is_ok]
    if problems:  # a warning of the task run, also when they do not fail it
        logger.warning("jobmon check: %s", problems_text(problems))
    if bad:
        raise JobmonCheckFailed(
            f"jobmon check found {len(bad)} problem(s) at level >= {level}: " + problems_text(bad)
        )
    return [a.to_dict() for a in alerts]


@task(name="jobmon-wait-for-run", retries=0, cache_policy=NO_CACHE)
def jobmon_wait_for_run(
    job_name: str,
    since: datetime | str | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    block: str | None = None,
) -> dict[str, Any]:
    """Wait for a run of ``job_name`` started at or after ``since`` to finish ``OK``; return
    ``{"job_id": ..., "status": "OK"}``. Say, a job logged inside the database by pg_cron,
    or another flow. Fails at once (:class:`JobmonCheckFailed`) when that run failed, and
    with a ``TimeoutError`` after ``timeout`` seconds without a finished run.

    ``since`` (a timezone-aware datetime or ISO 8601 string) defaults to when the flow run
    was scheduled to start, else when this task started: the job's *next* run."""
    for value, what in ((poll_interval, "poll_interval"), (timeout, "timeout")):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InvalidArgumentError(f"{what} must be a positive number of seconds")
    since_moment = as_datetime(since) if since not in (None, "") else _flow_run_start()
    logger = get_run_logger()
    deadline = time.monotonic() + timeout
    with open_jobmon(block) as jobmon:
        while True:
            state = jobmon.run_state(job_name, since_moment)
            logger.info("job %s since %s: %s", job_name, since_moment.isoformat(), state.state)
            if state.state == "failed":
                raise JobmonCheckFailed(
                    f"job {job_name!r} failed: run {state.job_id} ended with status "
                    f"{state.status!r}"
                )
            if state.state == "succeeded":
                return {"job_id": state.job_id, "status": state.status}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no run of job {job_name!r} since {since_moment.isoformat()} finished "
                    f"within {timeout:.0f} s"
                )
            time.sleep(min(poll_interval, remaining))  # the last look is at the deadline


def _flow_run_start() -> datetime:
    context = FlowRunContext.get()
    flow_run = getattr(context, "flow_run", None)
    for attr in ("expected_start_time", "start_time"):
        moment = getattr(flow_run, attr, None)
        if isinstance(moment, datetime):
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)
