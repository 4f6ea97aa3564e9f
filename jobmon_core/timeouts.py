"""Time-out values: from what a user passes (seconds, ``timedelta``) to what PostgreSQL reads.

One job: turn a time-out argument into whole milliseconds within PostgreSQL's limits, with a
typed error for anything else, and write milliseconds back as a setting (``5s``, ``300ms``)
or for people (``5 s``). Used by the session settings, the CLI and the Airflow hook, so that
a value is checked the same way wherever it enters.
"""

from __future__ import annotations

import math
from datetime import timedelta

from .errors import InvalidArgumentError

MAX_TIMEOUT_MS = 2**31 - 1
"""The largest time-out PostgreSQL accepts, in milliseconds (about 24.8 days)."""


def timeout_ms(value: object, what: str) -> int | None:
    """A timeout argument as whole milliseconds; ``None`` when it is None or zero.

    ``value`` is a number of seconds (int or float) or a :class:`datetime.timedelta`.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidArgumentError(
            f"{what} must be a number of seconds, a datetime.timedelta or None, "
            f"not {type(value).__name__}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgumentError(f"{what} must be zero or more seconds, not {value!r}")
    if seconds == 0:
        return None
    # compared in seconds first: seconds * 1000 of a huge float is inf, which round() refuses
    too_long = seconds > MAX_TIMEOUT_MS / 1000
    ms = MAX_TIMEOUT_MS + 1 if too_long else max(1, round(seconds * 1000))
    if ms > MAX_TIMEOUT_MS:
        raise InvalidArgumentError(
            f"{what} must be at most {MAX_TIMEOUT_MS // 1000} seconds (PostgreSQL's limit); "
            "use None for no limit"
        )
    return ms


def pg_value(ms: int) -> str:
    """A time-out as PostgreSQL reads it: ``5s``, ``300ms``."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def seconds_text(ms: int) -> str:
    """A time-out for people: ``5 s``, ``0.3 s``."""
    return f"{ms / 1000:g} s"
