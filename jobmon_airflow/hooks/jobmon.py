"""JobmonHook: an Airflow connection turned into a :class:`jobmon_core.Jobmon`."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import psycopg
from airflow.sdk import BaseHook
from psycopg.conninfo import make_conninfo

from jobmon_core import InvalidArgumentError, Jobmon, JobmonError
from jobmon_core.connection import resolve_target

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
# holding a task, the dag-processor or the scheduler (override with the `options` extra).
DEFAULT_OPTIONS = "-c lock_timeout=5s -c statement_timeout=15s"


class JobmonHook(BaseHook):
    """Reach the jobmon schema through an Airflow connection.

    Connections of type ``jobmon`` and ``postgres`` both work, so the connection you already
    use for the database will do. Host (a name, or a Unix socket directory), port, login,
    password and ``schema`` (the *database* name, as the postgres provider reads it) build
    the libpq connection; the extras may add ``jobmon_schema`` (default ``jobmon``) and libpq
    options such as ``sslmode``, ``connect_timeout`` or ``application_name``.

    The connection is fetched on first use, never at DAG parse time.
    """

    conn_name_attr = "jobmon_conn_id"
    default_conn_name = "jobmon_default"
    conn_type = "jobmon"
    hook_name = "pg-jobmon (PostgreSQL job log)"

    def __init__(self, jobmon_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobmon_conn_id = jobmon_conn_id

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
        params.setdefault("options", DEFAULT_OPTIONS)
        params = {k: str(v) for k, v in params.items() if v is not None}
        schema = str(extras.get("jobmon_schema") or "jobmon")
        return make_conninfo("", **params), schema

    def get_conninfo(self) -> tuple[str, str]:
        return self.conninfo_from(self.connection)

    async def aget_conninfo(self) -> tuple[str, str]:
        """For async code (the triggerer): fetch the connection without blocking the loop."""
        conn = await self.aget_connection(self.jobmon_conn_id)
        return self.conninfo_from(conn)

    def get_jobmon(self) -> Jobmon:
        """The :class:`~jobmon_core.Jobmon` of this connection (one per hook)."""
        return self._jobmon

    @cached_property
    def _jobmon(self) -> Jobmon:
        conninfo, schema = self.get_conninfo()
        jobmon = Jobmon(conninfo, schema=schema, application_name=DEFAULT_APPLICATION_NAME)
        self.log.info("jobmon: %s, schema %s", jobmon.target.display, schema)
        return jobmon

    def get_conn(self) -> psycopg.Connection:
        """A new work connection (not autocommit) to the same database, for running SQL."""
        conninfo, _ = self.get_conninfo()
        target = resolve_target(conninfo)
        try:
            return psycopg.connect(target.conninfo)
        except psycopg.Error as exc:
            raise JobmonError(
                f"cannot connect to {target.display}: {target.redact(str(exc))}"
            ) from None

    def test_connection(self) -> tuple[bool, str]:
        """Reach the database and check that the jobmon schema is installed."""
        try:
            jobmon = self.get_jobmon()
            version = jobmon.schema_version()
        except Exception as exc:
            return False, str(exc)
        if version == 0:
            return False, (
                f"connected, but the jobmon schema {jobmon.schema!r} is not installed: "
                "run `jobmon install` (or Jobmon.install()) on this database"
            )
        return True, f"Connection successfully tested: jobmon schema version {version}"

    def __getattr__(self, name: str) -> Any:
        """The writer, checker and report methods of :class:`Jobmon`, for custom operators:
        ``hook.add_step(...)``, ``hook.job(...)``, ``hook.check_job_status()``."""
        if name.startswith("_") or name not in _JOBMON_METHODS:
            raise AttributeError(name)
        return getattr(self.get_jobmon(), name)


_JOBMON_METHODS = frozenset(
    name for name in dir(Jobmon) if not name.startswith("_") and callable(getattr(Jobmon, name))
)
