"""The Prefect block that says where pg-jobmon logs: Prefect's counterpart of the Airflow
connection.

    from jobmon_prefect import JobmonPostgres

    JobmonPostgres(dsn="postgresql://etl@db/warehouse", schema_name="jobmon").save("prod")

and then ``jobmon_flow_hooks(block="prod")``, ``jobmon_check(block="prod")``, or
``JOBMON_PREFECT_BLOCK=prod`` for every flow of a process. The DSN is a secret field: the
server keeps it encrypted and the UI and API show ``********``. The block type is found by
its slug (``jobmon-postgres``) in any process, because pg-jobmon registers this package
under Prefect's ``prefect.collections`` entry point; ``prefect block register -m
jobmon_prefect.blocks`` shows it in the UI before the first save.
"""

from __future__ import annotations

import os
from typing import Any, cast

import psycopg
from prefect.blocks.core import Block
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr

from jobmon_core import Jobmon
from jobmon_core.jobmon import DEFAULT_SCHEMA

DEFAULT_CONNECT_TIMEOUT = 5
"""Seconds a hook waits for the jobmon database before it gives up with a warning."""

APPLICATION_NAME = "prefect-jobmon"

NETWORK_TIMEOUTS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "20000",
}
"""libpq settings added to a Prefect process's connection string where it is silent: a write
stuck on a dead network fails after about 20 s (unacknowledged data: ``tcp_user_timeout``
in ms; an idle wait for an answer: the keepalives, 10 + 3 x 5 s), instead of the system's
~15 minutes, so a flow process never hangs at exit waiting for its writer."""


def with_network_timeouts(dsn: str | None) -> str:
    """``dsn`` (None: ``JOBMON_DSN``, else libpq's variables) with :data:`NETWORK_TIMEOUTS`
    where it does not set them. A string libpq cannot parse is returned as it is, for
    :class:`~jobmon_core.Jobmon` to refuse with its own error (which never echoes it)."""
    if dsn is None:
        dsn = os.environ.get("JOBMON_DSN", "")
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return dsn
    for name, value in NETWORK_TIMEOUTS.items():
        params.setdefault(name, value)
    return make_conninfo("", **params)


class JobmonPostgres(Block):
    """The PostgreSQL database and schema pg-jobmon logs into."""

    _block_type_name = "Jobmon Postgres"
    _block_type_slug = "jobmon-postgres"
    _description = "Where pg-jobmon logs Prefect flow runs (job) and task tries (steps)."

    dsn: SecretStr = Field(
        description="libpq connection string (URI or key=value), password included."
    )
    schema_name: str = Field(default=DEFAULT_SCHEMA, description="The jobmon schema.")
    connect_timeout: int = Field(
        default=DEFAULT_CONNECT_TIMEOUT,
        ge=1,
        description="Seconds to wait for the database before logging is skipped.",
    )

    def jobmon(self) -> Jobmon:
        """A new :class:`~jobmon_core.Jobmon` on this database; the caller closes it."""
        return Jobmon(
            with_network_timeouts(self.dsn.get_secret_value()),
            schema=self.schema_name,
            application_name=APPLICATION_NAME,
            connect_timeout=self.connect_timeout,
        )


def load_block(name: str) -> JobmonPostgres:
    """The saved block ``name`` (``prod`` or ``jobmon-postgres/prod``), loaded with the sync
    client even when called from an async flow's event loop (a state hook is sync)."""
    document = name.split("/", 1)[1] if name.startswith("jobmon-postgres/") else name
    loader = cast(Any, JobmonPostgres).load
    return cast(JobmonPostgres, loader(document, _sync=True))
