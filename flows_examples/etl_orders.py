"""ETL on PostgreSQL, logged by the jobmon hooks.

Shows: ``jobmon_flow_hooks()`` on the flow and ``jobmon_task_hooks()`` on its tasks, so each
flow run is a jobmon job named ``ETL-ORDERS`` (the flow's name, as Prefect spells it) and
each task try a step; a task that fails once and is retried (a ``WARNING`` step, then an
``OK`` one); and, with ``fail=True``, a load whose transaction rolls back while the log keeps
every step (the hooks log on their own connection, outside the flow's transaction).

Where: ``JOBMON_PREFECT_BLOCK`` (a saved ``JobmonPostgres`` block), else ``JOBMON_DSN``; the
work is done in the same database here. Run it: ``python -m flows_examples.etl_orders``.
"""

from __future__ import annotations

import psycopg
from prefect import flow, task
from prefect.runtime import task_run

from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks, open_jobmon


def work_connection() -> psycopg.Connection:
    """A connection of the flow's own to the jobmon block's (or JOBMON_DSN's) database."""
    with open_jobmon() as jobmon:
        return psycopg.connect(jobmon.target.conninfo)


@task(**jobmon_task_hooks())
def prepare() -> None:
    with work_connection() as work:
        work.execute("CREATE TABLE IF NOT EXISTS public.orders (id serial, amount numeric)")


@task(retries=1, retry_delay_seconds=0, **jobmon_task_hooks())
def extract(rows: int) -> int:
    """Fails on its first try, as a flaky source would; the retry succeeds."""
    if task_run.run_count == 1:
        raise ConnectionError("source database is restarting")
    return rows


@task(**jobmon_task_hooks())
def load(rows: int, fail: bool) -> int:
    """One transaction; with ``fail`` a bad row makes it roll back."""
    with work_connection() as work, work.transaction():
        work.execute(
            "INSERT INTO public.orders (amount) SELECT round((random() * 100)::numeric, 2)"
            " FROM generate_series(1, %s)",
            [rows],
        )
        if fail:
            work.execute("INSERT INTO public.orders (amount) VALUES (-17)")
        [(negative,)] = work.execute(
            "SELECT count(*) FROM public.orders WHERE amount < 0"
        ).fetchall()
        if negative:
            raise ValueError(f"{negative} order(s) with a negative amount")
    return rows


@flow(**jobmon_flow_hooks())
def etl_orders(rows: int = 1000, fail: bool = False) -> int:
    prepare()
    return load(extract(rows), fail)


if __name__ == "__main__":
    etl_orders()
