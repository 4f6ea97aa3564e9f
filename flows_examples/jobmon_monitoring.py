"""The monitoring flow: fail when jobmon finds a CRITICAL problem.

Shows: a ``job_check_config`` entry set up from a task (ETL-ORDERS, the flow of
``etl_orders.py``, must run every day; any failed run alerts), ``jobmon_wait_for_run``
waiting for the ETL's run and failing at once if it failed, and ``jobmon_check`` failing the
flow run (and so alerting the way your Prefect automations alert) on CRITICAL. Deploy it on
a schedule, e.g. every 15 minutes: ``jobmon_monitoring.serve(name="jobmon", interval=900)``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow, task

from jobmon_prefect import jobmon_check, jobmon_flow_hooks, jobmon_wait_for_run, open_jobmon


@task
def configure_checks() -> None:
    """Idempotent: ETL-ORDERS is MISSING (warning) after 25 h, critical after 49 h."""
    with open_jobmon() as jobmon:
        jobmon.configure_check(
            "etl-orders", warn=timedelta(hours=25), error=timedelta(hours=49), sensitivity=0
        )


@flow(**jobmon_flow_hooks())
def jobmon_monitoring(
    upstream_job: str | None = "etl-orders",
    since: datetime | None = None,
    wait_timeout: float = 3600,
) -> list[dict[str, Any]]:
    configure_checks()
    if upstream_job:
        jobmon_wait_for_run(upstream_job, since=since, poll_interval=5, timeout=wait_timeout)
    return jobmon_check(fail_level=3)


if __name__ == "__main__":
    jobmon_monitoring()
