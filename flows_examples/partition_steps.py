"""A task that logs its own sub-steps with the writer: ``jobmon.job()`` and ``job.step()``.

Shows: the core API inside a Prefect task: a job of its own (``PARTITION MAINTENANCE``), each
sub-step ``OK`` with a message, or ``CRITICAL`` with the exception, whatever happens to the
task; the session opened with ``open_jobmon()`` (the block, else ``JOBMON_DSN``) and closed
with the ``with``. The flow itself is logged by the hooks as usual.
"""

from __future__ import annotations

import psycopg
from prefect import flow, task
from psycopg import sql

from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks, open_jobmon


@task(**jobmon_task_hooks())
def maintain(table: str) -> int:
    with (
        open_jobmon() as jobmon,  # closes its logging session at the end
        psycopg.connect(jobmon.target.conninfo) as work,
        jobmon.job("partition maintenance", conn=work) as job,
    ):
        current = sql.Identifier("public", table)
        following = sql.Identifier("public", f"{table}_next")
        with job.step(f"create {table}_next") as step:
            work.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(following, current)
            )
            work.commit()
            step.message = f"public.{table}_next ready"
        with job.step(f"analyze {table}") as step:
            work.execute(sql.SQL("ANALYZE {}").format(current))
            work.commit()
            step.message = "statistics refreshed"
    assert job.job_id is not None
    return job.job_id


@flow(**jobmon_flow_hooks())
def partition_maintenance(table: str = "orders") -> int:
    return maintain(table)


if __name__ == "__main__":
    partition_maintenance()
