"""A custom operator that logs the sub-steps of one task with ``JobmonHook`` and ``job.step()``.

Shows: ``hook.jobmon.job()`` inside ``execute``: a job of its own, each sub-step ``OK`` or
``CRITICAL`` with the exception, whatever happens to the task; the hook used as a context
manager, so the task leaves no database session open behind it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, BaseOperator
from psycopg import sql

from jobmon_airflow.hooks.jobmon import JobmonHook


class PartitionMaintenanceOperator(BaseOperator):
    """Create next month's partition table and analyze, each a jobmon step."""

    def __init__(self, *, table: str, jobmon_conn_id: str = "jobmon_default", **kwargs):
        super().__init__(**kwargs)
        self.table = table
        self.jobmon_conn_id = jobmon_conn_id

    def execute(self, context):
        with (
            JobmonHook(self.jobmon_conn_id) as hook,  # closes its logging session at the end
            hook.get_conn() as work,
            hook.jobmon.job("partition maintenance", conn=work) as job,
        ):
            table = sql.Identifier("public", self.table)
            following = sql.Identifier("public", f"{self.table}_next")
            with job.step(f"create {self.table}_next") as step:
                work.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(following, table)
                )
                work.commit()
                step.message = f"public.{self.table}_next ready"
            with job.step(f"analyze {self.table}") as step:
                work.execute(sql.SQL("ANALYZE {}").format(table))
                work.commit()
                step.message = "statistics refreshed"
        return job.job_id


with DAG(
    "partition_maintenance",
    schedule="@monthly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["pg-jobmon", "example"],
) as dag:
    PartitionMaintenanceOperator(task_id="maintain_orders", table="orders")
