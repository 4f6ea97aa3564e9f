"""What the check tasks of every orchestrator share: the history window and the moment
they are given (as a value, a string or a number), the alerts as a table and as one line,
and which alerts fail the task.

Framework-free: the Airflow operators and sensors and the Prefect tasks use it alike.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from .alerts import Alert
from .durations import parse_duration
from .errors import InvalidArgumentError
from .text import table
from .validation import MAX_DURATION


def as_history(value: Any) -> timedelta | None:
    """A templated window: a timedelta, a string such as ``"3 days"`` or ``"72h"``, or None."""
    if value is None or value == "" or isinstance(value, timedelta):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value <= MAX_DURATION.total_seconds():
            raise InvalidArgumentError(
                f"history in seconds must be from 0 to {MAX_DURATION.total_seconds():.0f}, "
                f"not {value!r}"
            )
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value)
    raise InvalidArgumentError(
        f"history must be a timedelta or a string like '3 days', not {value!r}"
    )


def as_datetime(value: Any) -> datetime:
    """A templated moment: a datetime or an ISO 8601 string (time zone required)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidArgumentError(f"since must be a timezone-aware datetime, not {value!r}")
    return value


def alerts_table(alerts: list[Alert]) -> str:
    return table(
        ["code", "status", "job_name", "text"],
        [(a.alert_code, a.alert_status, a.job_name, a.alert_text) for a in alerts],
    )


def problems_text(alerts: list[Alert]) -> str:
    return "; ".join(
        f"{a.job_name} ({a.alert_status}, code {a.alert_code}): {a.alert_text}" for a in alerts
    )


def failing(alerts: list[Alert], fail_level: int) -> list[Alert]:
    return [a for a in alerts if a.job_name is not None and a.alert_code >= fail_level]


def check_fail_level(fail_level: Any) -> int:
    if isinstance(fail_level, bool) or not isinstance(fail_level, int) or fail_level < 2:
        raise InvalidArgumentError(f"fail_level must be an int of 2 or more, not {fail_level!r}")
    return fail_level
