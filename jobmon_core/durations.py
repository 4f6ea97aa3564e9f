"""Durations as people type and read them: ``3d``, ``1h30m``, ``2 days``; ``5 min 3 s``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from .errors import InvalidArgumentError
from .validation import MAX_DURATION

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def parse_duration(text: str) -> timedelta:
    """``"3d"``, ``"1h30m"``, ``"90 s"``, ``"2 days 4 hours"``, ``"1 week"`` -> timedelta."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError("a duration is required, e.g. 30m, 6h, 3d or '2 days'")
    source = text.strip().lower()
    total = 0.0
    position = 0
    while position < len(source):
        match = _PART.match(source, position)
        if not match or match[2] not in _UNITS:
            raise InvalidArgumentError(
                f"cannot read the duration {text!r}: use a number and a unit "
                "(s, m, h, d, w, or words such as '2 days'), e.g. 90s, 1h30m, 3d"
            )
        total += float(match[1]) * _UNITS[match[2]]
        position = match.end()
    if total > MAX_DURATION.total_seconds():  # also keeps timedelta() from overflowing
        raise InvalidArgumentError(
            f"the duration {text!r} is too long: at most 1000 years ({MAX_DURATION.days}d)"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta | float | None) -> str:
    """Readable: ``0.004 s``, ``12.3 s``, ``5 min 3 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):  # a real column set to 'NaN' or 'Infinity' by hand
        return f"{seconds} s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{sign}{seconds:.3f} s"
    if seconds < 60:
        return f"{sign}{seconds:.1f} s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days} d {hours} h" if hours else f"{sign}{days} d"
    if hours:
        return f"{sign}{hours} h {minutes} min" if minutes else f"{sign}{hours} h"
    return f"{sign}{minutes} min {secs} s" if secs else f"{sign}{minutes} min"
