"""What the logging session asks of the server at startup: its lock and statement time-outs.

Why at startup: a ``SET`` would live in the session, which a transaction pooler (PgBouncer)
lends to other clients. The time-outs travel in libpq's ``options`` startup parameter
instead, before the connection string's own ``options`` so that a user's explicit
``-c lock_timeout=...`` wins (PostgreSQL applies them in order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .timeouts import pg_value, seconds_text, timeout_ms

DEFAULT_LOCK_TIMEOUT = 5.0
"""Seconds a logging statement waits for a lock before it gives up (``lock_timeout``). A log
write takes no lock that a healthy system holds for long: a wait this long means a long
transaction, a ``LOCK``/``TRUNCATE``/``ALTER`` on the jobmon tables, or the job's own
transaction holding what the write needs, which would otherwise be a wait without end."""

DEFAULT_STATEMENT_TIMEOUT = 15.0
"""Seconds any statement of the logging session may run (``statement_timeout``): a log write
takes a millisecond; checks, reports and ``job_log_clear`` batches share the session and stay
well below this on large logs. :meth:`Jobmon.install` uses a session of its own, unbounded."""


def option_names(options: str | None) -> set[str]:
    """The settings named by ``-c name=value`` / ``--name=value`` in libpq ``options``."""
    found = re.findall(r"(?:^|\s)(?:-c\s*|--)([\w.-]+)=", options or "")
    return {name.replace("-", "_").lower() for name in found}


@dataclass(frozen=True)
class SessionSettings:
    """What the logging session asks of the server at startup: its two time-outs, in ms."""

    lock_timeout: int | None = None
    statement_timeout: int | None = None

    @classmethod
    def create(cls, lock_timeout: object, statement_timeout: object) -> SessionSettings:
        return cls(
            timeout_ms(lock_timeout, "lock_timeout"),
            timeout_ms(statement_timeout, "statement_timeout"),
        )

    @property
    def settings(self) -> dict[str, int]:
        found = {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout}
        return {name: ms for name, ms in found.items() if ms is not None}

    def options(self, dsn_options: str | None) -> str | None:
        """The libpq ``options`` to connect with: ours first, then those of the connection
        string, so that its own ``-c lock_timeout=...`` wins (PostgreSQL applies them in
        order)."""
        ours = " ".join(f"-c {name}={pg_value(ms)}" for name, ms in self.settings.items())
        return " ".join(part for part in (ours, dsn_options) if part) or None

    def describe(self, name: str, dsn_options: str | None) -> str:
        """How ``name`` is set for the session, for error messages."""
        if name in option_names(dsn_options):
            return f"{name} as set in the options of the connection string"
        ms = self.settings.get(name)
        return f"{name} = {seconds_text(ms)}" if ms is not None else f"the server's {name}"
