"""Argument checks shared by the public functions.

They run before anything is sent to the database, so bad input is refused with a message
that names the argument, and nothing is written.
"""

from __future__ import annotations

from .errors import InvalidArgumentError

MAX_ID = 2**63 - 1  # bigint


def text(value: object, what: str, *, allow_none: bool = False, allow_empty: bool = True) -> str:
    """Check a text argument: a str, storable in PostgreSQL text (no NUL character)."""
    if value is None:
        if allow_none:
            return None  # type: ignore[return-value]
        raise InvalidArgumentError(f"{what} must be a string, not None")
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InvalidArgumentError(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidArgumentError(
            f"{what} contains a NUL character (\\x00), which PostgreSQL cannot store in text; "
            "remove it or escape it before logging"
        )
    return value


def name(value: object, what: str = "job name") -> str:
    """A job name: non-empty text."""
    return text(value, what, allow_empty=False)


def ident(value: object, what: str) -> int:
    """A job or step id: a positive integer that fits in bigint."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if not 1 <= value <= MAX_ID:
        raise InvalidArgumentError(f"{what} must be between 1 and {MAX_ID}, not {value}")
    return value


def level(value: object) -> int:
    """An alert level (code in the status table): a positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"level must be an int alert code, not {type(value).__name__}")
    if not 1 <= value <= 2**31 - 1:
        raise InvalidArgumentError(f"level must be a positive alert code, not {value}")
    return value
