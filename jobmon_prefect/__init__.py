"""pg-jobmon for Prefect 3: a thin skin over :mod:`jobmon_core`, with the Airflow provider's
run model (every flow run a job, every task try a step, keys from Prefect's ids).

    from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks, jobmon_check

It turns Prefect things (blocks, hooks' flow runs and states, tasks) into core calls and
back; all monitoring logic lives in the core and in the database. Importing it registers
the :class:`JobmonPostgres` block type (this package is pg-jobmon's ``prefect.collections``
entry point, so ``Block.load("jobmon-postgres/prod")`` finds it in any process). It never
imports Airflow.
"""

from jobmon_core import __version__

from .blocks import JobmonPostgres
from .destination import open_jobmon
from .hooks import jobmon_flow_hooks, jobmon_task_hooks, with_jobmon_hooks
from .tasks import JobmonCheckFailed, jobmon_check, jobmon_wait_for_run

__all__ = [
    "JobmonCheckFailed",
    "JobmonPostgres",
    "__version__",
    "jobmon_check",
    "jobmon_flow_hooks",
    "jobmon_task_hooks",
    "jobmon_wait_for_run",
    "open_jobmon",
    "with_jobmon_hooks",
]
