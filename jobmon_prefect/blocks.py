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

from typing import Any, cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from jobmon_core import Jobmon
from jobmon_core.jobmon import DEFAULT_SCHEMA

DEFAULT_CONNECT_TIMEOUT = 5
"""Seconds a hook waits for the jobmon database before it gives up with a warning."""

APPLICATION_NAME = "prefect-jobmon"


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
            self.dsn.get_secret_value(),
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
