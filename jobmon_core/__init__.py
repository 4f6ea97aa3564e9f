"""pg-jobmon core: non-transactional job logging and monitoring for PostgreSQL.

    from jobmon_core import Jobmon

    jm = Jobmon("postgresql://etl@db/warehouse")
    jm.install()
    with jm.job("nightly load", conn=work) as job:
        with job.step("copy rows"):
            ...

Nothing here imports Airflow; the Airflow provider lives in ``jobmon_airflow``.
"""

from importlib.metadata import PackageNotFoundError, version

from .alerts import Alert
from .checker import CheckConfig, CheckHistoryError, RunState
from .context import Job, Step
from .errors import (
    DatabaseError,
    InvalidArgumentError,
    JobFinishedError,
    JobmonConnectionError,
    JobmonError,
    JobmonPermissionError,
    JobmonTimeoutError,
    JobNotFoundError,
    LockTimeoutError,
    NotFoundError,
    SchemaError,
    SchemaNotInstalledError,
    StatementTimeoutError,
    StatusTableError,
    StatusTextError,
    StepNotFoundError,
)
from .jobmon import Jobmon
from .reports import JobRecord, StepRecord

try:
    __version__ = version("pg-jobmon")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "Alert",
    "CheckConfig",
    "CheckHistoryError",
    "DatabaseError",
    "InvalidArgumentError",
    "Job",
    "JobFinishedError",
    "JobNotFoundError",
    "JobRecord",
    "Jobmon",
    "JobmonConnectionError",
    "JobmonError",
    "JobmonPermissionError",
    "JobmonTimeoutError",
    "LockTimeoutError",
    "NotFoundError",
    "RunState",
    "SchemaError",
    "SchemaNotInstalledError",
    "StatementTimeoutError",
    "StatusTableError",
    "StatusTextError",
    "Step",
    "StepNotFoundError",
    "StepRecord",
    "__version__",
]
