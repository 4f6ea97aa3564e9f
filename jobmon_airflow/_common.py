"""Small conversions shared by the operators, the sensor and the trigger (those every
orchestrator's check tasks share live in :mod:`jobmon_core.check_tasks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobmon_core import InvalidArgumentError
from jobmon_core.check_tasks import (
    alerts_table,
    as_datetime,
    as_history,
    check_fail_level,
    failing,
    problems_text,
)

__all__ = [
    "alerts_table",
    "as_datetime",
    "as_history",
    "check_fail_level",
    "failing",
    "problems_text",
    "since_of",
]


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
