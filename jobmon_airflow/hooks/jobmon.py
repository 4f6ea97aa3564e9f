"""JobmonHook: an Airflow connection turned into a :class:`jobmon_core.Jobmon`."""

from __future__ import annotations

import warnings
from functools import cached_property
from typing import Any, Self

import psycopg
from airflow.sdk import BaseHook
from psycopg.conninfo import make_conninfo

from jobmon_core import InvalidArgumentError, Jobmon, JobmonError
from jobmon_core.connection import (
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    resolve_target,
    timeout_ms,
)

from .._compat import AirflowProviderDeprecationWarning

# Connection extras passed on to libpq; anything else in the extras is ignored.
LIBPQ_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "gssencmode",
)
ACCEPTED_TYPES = ("jobmon", "postgres", "postgresql")
DEFAULT_CONNECT_TIMEOUT = 5  # short: logging must never hold a task up for long
DEFAULT_APPLICATION_NAME = "airflow-jobmon"
# Bounded waits in the server too: a logging call that meets a lock gives up instead of
# holding a task, the dag-processor or the scheduler. They are Jobmon's own defaults, set on
# the logging session only (never on get_conn()'s work connection, which runs your SQL);
# the extras `lock_timeout` and `statement_timeout` (seconds; null or 0: the server's) change
# them, and an `options` extra with `-c lock_timeout=...` overrides them.
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class JobmonHook(BaseHook):
    """Reach the jobmon schema through an Airflow connection.

    Connections of type ``jobmon`` and ``postgres`` both work, so the connection you already
    use for the database will do. Host (a name, or a Unix socket directory), port, login,
    password and ``schema`` (the *database* name, as the postgres provider reads it) build
    the libpq connection; the extras may add ``jobmon_schema`` (default ``jobmon``) and libpq
    options such as ``sslmode``, ``connect_timeout`` or ``application_name``.

    The logging session's extras: ``lock_timeout`` and ``statement_timeout`` (seconds,
    default 5 and 15; null or 0 leaves the server's setting), ``prepare`` (true/false;
    default "auto": on unless a connection pooler is detected) and ``pgbouncer`` (true: the
    connection goes through PgBouncer in transaction mode, so no prepared statements and no
    startup ``options``, the time-outs being set on the server with ``ALTER ROLE ... SET``).

    The connection is fetched on first use, never at DAG parse time. :attr:`jobmon` is the
    :class:`~jobmon_core.Jobmon` for custom operators (``hook.jobmon.add_step(...)``); its
    logging session is the hook's, closed by :meth:`close` or at the end of ``with hook:``.
    """

    conn_name_attr = "jobmon_conn_id"
    default_conn_name = "jobmon_default"
    conn_type = "jobmon"
    hook_name = "pg-jobmon (PostgreSQL job log)"

    def __init__(self, jobmon_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobmon_conn_id = jobmon_conn_id
        self._jobmon: Jobmon | None = None

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.jobmon_conn_id)

    @staticmethod
    def conninfo_from(conn: Any) -> tuple[str, str]:
        """The libpq connection string and the jobmon schema of an Airflow connection."""
        conn_type = (conn.conn_type or "").lower()
        if conn_type not in ACCEPTED_TYPES:
            raise InvalidArgumentError(
                f"connection {conn.conn_id!r} is of type {conn.conn_type!r}; "
                "pg-jobmon needs a 'jobmon' or 'postgres' connection"
            )
        extras = conn.extra_dejson or {}
        params: dict[str, Any] = {
            "host": conn.host or None,
            "port": conn.port or None,
            "dbname": conn.schema or None,
            "user": conn.login or None,
            "password": conn.password or None,
        }
        params.update({k: extras[k] for k in LIBPQ_EXTRAS if extras.get(k) not in (None, "")})
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        params.setdefault("application_name", DEFAULT_APPLICATION_NAME)
        params = {k: str(v) for k, v in params.items() if v is not None}
        schema = str(extras.get("jobmon_schema") or "jobmon")
        return make_conninfo("", **params), schema

    @staticmethod
    def jobmon_options(conn: Any) -> dict[str, Any]:
        """The :class:`~jobmon_core.Jobmon` arguments of an Airflow connection's extras:
        ``lock_timeout``, ``statement_timeout``, ``prepare`` (see the class docstring)."""
        extras = conn.extra_dejson or {}
        pgbouncer = _flag(extras.get("pgbouncer", False), "pgbouncer", conn.conn_id)
        options: dict[str, Any] = {
            "prepare": False if pgbouncer else None,
            "lock_timeout": None if pgbouncer else DEFAULT_LOCK_TIMEOUT,
            "statement_timeout": None if pgbouncer else DEFAULT_STATEMENT_TIMEOUT,
        }
        for name in ("lock_timeout", "statement_timeout"):
            if name in extras:
                options[name] = _seconds(extras[name], name, conn.conn_id)
        prepare = extras.get("prepare")
        if isinstance(prepare, str) and prepare.strip().lower() in ("", "auto"):
            options["prepare"] = None
        elif prepare is not None:
            options["prepare"] = _flag(prepare, "prepare", conn.conn_id)
        return options

    def get_conninfo(self) -> tuple[str, str]:
        return self.conninfo_from(self.connection)

    async def aget_conninfo(self) -> tuple[str, str]:
        """For async code (the triggerer): fetch the connection without blocking the loop."""
        conn = await self.aget_connection(self.jobmon_conn_id)
        return self.conninfo_from(conn)

    @property
    def jobmon(self) -> Jobmon:
        """The :class:`~jobmon_core.Jobmon` of this connection, made on first use.

        Its logging session belongs to this hook: :meth:`close` (or leaving ``with hook:``)
        ends it, so a task or a sensor's poke never leaves a backend open behind it.
        """
        if self._jobmon is None:
            conninfo, schema = self.get_conninfo()
            self._jobmon = Jobmon(
                conninfo,
                schema=schema,
                application_name=DEFAULT_APPLICATION_NAME,
                **self.jobmon_options(self.connection),
            )
            self.log.info("jobmon: %s, schema %s", self._jobmon.target.display, schema)
        return self._jobmon

    def get_jobmon(self) -> Jobmon:
        """The same as :attr:`jobmon` (one per hook)."""
        return self.jobmon

    def close(self) -> None:
        """Close the logging session, if one is open. Idempotent, as psycopg_pool's
        ``close()``; the hook stays usable (a later call opens a new session).

        Connections returned by :meth:`get_conn` are the caller's, never closed here.
        """
        if self._jobmon is not None:
            self._jobmon.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_conn(self) -> psycopg.Connection:
        """A new work connection (not autocommit) to the same database, for running SQL.

        The caller owns it: use it as ``with hook.get_conn() as work:``, which commits on a
        clean exit, rolls back on an exception, and closes it either way."""
        conninfo, _ = self.get_conninfo()
        target = resolve_target(conninfo)
        try:
            return psycopg.connect(target.conninfo)
        except psycopg.Error as exc:
            raise JobmonError(
                f"cannot connect to {target.display}: {target.redact(str(exc))}"
            ) from None

    def test_connection(self) -> tuple[bool, str]:
        """Reach the database and check that the jobmon schema is installed (the session
        it opens is closed before it returns)."""
        try:
            jobmon = self.jobmon
            version = jobmon.schema_version()
        except Exception as exc:
            return False, str(exc)
        finally:
            self.close()
        if version == 0:
            return False, (
                f"connected, but the jobmon schema {jobmon.schema!r} is not installed: "
                "run `jobmon install` (or Jobmon.install()) on this database"
            )
        return True, f"Connection successfully tested: jobmon schema version {version}"

    def __getattr__(self, name: str) -> Any:
        """Deprecated: ``hook.add_step(...)`` passes through to :attr:`jobmon`; write
        ``hook.jobmon.add_step(...)``, which editors and type checkers can see."""
        if name.startswith("_") or name not in _JOBMON_METHODS:
            raise AttributeError(name)
        warnings.warn(
            f"JobmonHook.{name} is deprecated: use hook.jobmon.{name}",
            AirflowProviderDeprecationWarning,
            stacklevel=2,
        )
        return getattr(self.jobmon, name)


def _seconds(value: Any, name: str, conn_id: str) -> float | None:
    """A time-out extra: a number of seconds (JSON number or numeric string), null or 0."""
    if value in (None, ""):
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is None:
        raise InvalidArgumentError(
            f"connection {conn_id!r}: the extra {name!r} must be a number of seconds or null, "
            f"not {value!r}"
        )
    timeout_ms(seconds, f"connection {conn_id!r}: the extra {name!r}")  # range check
    return seconds


def _flag(value: Any, name: str, conn_id: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidArgumentError(
        f"connection {conn_id!r}: the extra {name!r} must be true or false, not {value!r}"
    )


_JOBMON_METHODS = frozenset(
    name for name in dir(Jobmon) if not name.startswith("_") and callable(getattr(Jobmon, name))
)
