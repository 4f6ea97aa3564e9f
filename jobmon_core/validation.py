"""Argument checks shared by the public functions.

They run before anything is sent to the database, so bad input is refused with a message
that names the argument, and nothing is written.

Text is stored exactly as given, whatever characters it holds (control characters, quotes,
any script), with two exceptions PostgreSQL itself cannot store, which are refused rather
than silently altered: the NUL character, and lone surrogates (``"\\udcff"``, what Python
makes of undecodable bytes in file names and ``argv``), which are not Unicode text and have
no UTF-8 form. Names that PostgreSQL indexes (job names, run and step keys) are limited to
:data:`MAX_KEY_BYTES`; messages, actions and statuses are not limited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, overload

from .errors import InvalidArgumentError

MAX_ID = 2**63 - 1  # bigint
MAX_INT = 2**31 - 1  # integer
MAX_KEY_BYTES = 800
"""Longest job name, run key or step key, in UTF-8 bytes. These columns are indexed, and a
btree entry is limited to 2704 bytes; ``upper()`` may make a name up to three times longer
(ICU: ``upper('ΐ')`` is three characters), so 800 bytes always fit."""
MAX_DURATION = timedelta(days=365_250)
"""Longest window, threshold or age: 1000 years. ``now() - interval`` must stay inside
PostgreSQL's timestamp range, or every later check would fail on a stored threshold."""


@overload
def text(
    value: object, what: str, *, allow_none: Literal[False] = False, allow_empty: bool = True
) -> str: ...
@overload
def text(value: object, what: str, *, allow_none: bool, allow_empty: bool = True) -> str | None: ...
def text(
    value: object, what: str, *, allow_none: bool = False, allow_empty: bool = True
) -> str | None:
    """Check a text argument: a str, storable in PostgreSQL text (no NUL, valid Unicode).
    ``None`` comes back as ``None`` only with ``allow_none`` (typed so: a str otherwise)."""
    if value is None:
        if allow_none:
            return None
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
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{what} contains a lone surrogate ({value[exc.start]!r} at position {exc.start}), "
            "which is not valid Unicode and cannot be stored (typically bytes that were not "
            "UTF-8, decoded with errors='surrogateescape'); pass valid text, or escape it: "
            "text.encode('utf-8', 'backslashreplace').decode()"
        ) from None
    return value


@overload
def key(value: object, what: str, *, allow_none: Literal[False] = False) -> str: ...
@overload
def key(value: object, what: str, *, allow_none: bool) -> str | None: ...
def key(value: object, what: str, *, allow_none: bool = False) -> str | None:
    """An indexed name (job name, run key, step key): non-empty text of at most
    :data:`MAX_KEY_BYTES` bytes in UTF-8."""
    checked = text(value, what, allow_none=allow_none, allow_empty=False)
    if checked is not None and len(checked.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidArgumentError(
            f"{what} is {len(checked.encode('utf-8'))} bytes long (UTF-8); the limit is "
            f"{MAX_KEY_BYTES} bytes, as it is indexed: shorten it and log details in a step"
        )
    return checked


def name(value: object, what: str = "job name") -> str:
    """A job name: non-empty text of at most :data:`MAX_KEY_BYTES` bytes."""
    return key(value, what)


def storable(value: str) -> str:
    """``value`` made storable as text, for messages we compose ourselves (an exception's
    text): a NUL becomes ``\\x00`` and a lone surrogate ``\\udcff``, everything else stays."""
    value = value.replace("\x00", "\\x00")
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def ident(value: object, what: str) -> int:
    """A job or step id: a positive integer that fits in bigint."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an int, not {type(value).__name__}")
    if not 1 <= value <= MAX_ID:
        raise InvalidArgumentError(f"{what} must be between 1 and {MAX_ID}, not {value}")
    return value


def count(value: object, what: str, *, maximum: int = MAX_ID) -> int:
    """A positive int of at most ``maximum`` (a limit, a number of runs, a batch size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{what} must be a positive int, not {value!r}")
    if value > maximum:
        raise InvalidArgumentError(f"{what} must be at most {maximum}, not {value}")
    return value


def duration(value: object, what: str) -> timedelta:
    """A window, threshold or age: a ``timedelta`` from zero to :data:`MAX_DURATION`."""
    if not isinstance(value, timedelta):
        raise InvalidArgumentError(
            f"{what} must be a datetime.timedelta, not {type(value).__name__}"
        )
    if value < timedelta(0):
        raise InvalidArgumentError(f"{what} must not be negative, got {value}")
    if value > MAX_DURATION:
        raise InvalidArgumentError(
            f"{what} must be at most 1000 years ({MAX_DURATION.days} days), got {value}"
        )
    return value


def level(value: object) -> int:
    """An alert level (code in the status table): a positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"level must be an int alert code, not {type(value).__name__}")
    if not 1 <= value <= MAX_INT:
        raise InvalidArgumentError(f"level must be a positive alert code, not {value}")
    return value
