"""Connection strings: what to connect with, and what may be shown to people.

One job: parse a libpq connection string (URI or key=value) once, add pg-jobmon's defaults
where it is silent, and keep the password out of everything printed or raised: ``display``
is the string without it, and :meth:`ConnectionTarget.redact` scrubs it (and
``PGPASSWORD``) from any text, such as libpq's error messages, which may quote it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import InvalidArgumentError

DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds libpq waits for the server when the connection string does not say."""

DEFAULT_APPLICATION_NAME = "pg-jobmon"
REDACTED = "********"


@dataclass(frozen=True)
class ConnectionTarget:
    """A parsed connection string: what to connect with, and what may be shown to people.

    ``conninfo`` holds the password (libpq needs it); ``display`` never does, and
    ``secrets`` lists the strings that must be scrubbed from anything we print or raise.
    """

    conninfo: str
    display: str
    secrets: tuple[str, ...]

    def redact(self, text: str) -> str:
        """``text`` on one line (libpq's messages span several), every secret replaced."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return " ".join(text.split())


def resolve_target(
    dsn: str | None,
    *,
    application_name: str = DEFAULT_APPLICATION_NAME,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
) -> ConnectionTarget:
    """Parse ``dsn`` (URI or key=value; ``None`` means ``JOBMON_DSN``, else libpq's defaults).

    Our defaults for ``application_name`` and ``connect_timeout`` apply only where the
    connection string is silent, so a user's explicit setting always wins.
    """
    if dsn is None:
        dsn = os.environ.get("JOBMON_DSN", "")
    if not isinstance(dsn, str):
        raise InvalidArgumentError(
            f"dsn must be a libpq connection string (str) or None, not {type(dsn).__name__}"
        )
    # libpq would cut the string at a NUL, and a lone surrogate (undecodable bytes in argv or
    # JOBMON_DSN) has no UTF-8 form: refuse both, without echoing the string (a password).
    if "\x00" in dsn or dsn.encode("utf-8", "replace").decode("utf-8") != dsn:
        raise InvalidArgumentError(
            "the connection string contains a NUL character or bytes that are not valid "
            "UTF-8; pass it as proper text"
        )
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq's message quotes fragments of the string, which may be the password: say
        # what is wrong without echoing any of it.
        raise InvalidArgumentError(
            "the connection string is not valid libpq syntax: use a URI "
            "(postgresql://user@host:5432/db) or key=value pairs (host=... dbname=...); "
            "quote values holding spaces with single quotes"
        ) from None
    params.setdefault("application_name", application_name)
    params.setdefault("connect_timeout", str(connect_timeout))
    secrets = [str(params["password"])] if params.get("password") else []
    if os.environ.get("PGPASSWORD"):
        secrets.append(os.environ["PGPASSWORD"])
    shown = {k: v for k, v in params.items() if k != "password"}
    return ConnectionTarget(
        conninfo=make_conninfo("", **params),
        display=make_conninfo("", **shown),
        secrets=tuple(s for s in secrets if s),
    )
