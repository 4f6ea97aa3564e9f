"""What the Airflow check tasks alone need (what every orchestrator's check tasks share
lives in :mod:`jobmon_core.check_tasks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobmon_core import InvalidArgumentError


def since_of(context: Any) -> datetime:
    """The start of the data interval, else the logical date, else when the run started."""
    for key in ("data_interval_start", "logical_date"):
        value = context.get(key)
        if value is not None:
            return value
    dag_run = context.get("dag_run")
    for attr in ("run_after", "start_date"):
        value = getattr(dag_run, attr, None)
        if value is not None:
            return value
    raise InvalidArgumentError("since was not given and the DAG run has no start to use")
