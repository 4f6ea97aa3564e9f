"""Durations as typed on the command line and as shown in reports (no database needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobmon_core import InvalidArgumentError
from jobmon_core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        ("2 days", timedelta(days=2)),
        ("1 day 2 hours", timedelta(days=1, hours=2)),
        ("1.5h", timedelta(minutes=90)),
        ("  25H ", timedelta(hours=25)),
    ],
)
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "d", "3 fortnights", "-1d", "1h 30", "1d;drop", None])
def test_parse_refuses(text):
    with pytest.raises(InvalidArgumentError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (0.0042, "0.004 s"),
        (12.34, "12.3 s"),
        (timedelta(minutes=5, seconds=3), "5 min 3 s"),
        (timedelta(minutes=5), "5 min"),
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (timedelta(days=3, hours=4), "3 d 4 h"),
        (timedelta(days=2), "2 d"),
    ],
)
def test_format(value, expected):
    assert format_duration(value) == expected
