"""ETL on PostgreSQL, logged by the jobmon callbacks.

Shows: ``jobmon_task_callbacks()`` in ``default_args`` and ``jobmon_dag_callbacks()`` on the
DAG, so each run is a jobmon job named ``ETL_ORDERS`` and each task try a step; a task that
fails once and is retried (a ``WARNING`` step, then an ``OK`` one); and, with the param
``fail`` set, a load whose transaction rolls back while the log keeps every step.

Connections: ``jobmon_default`` (the jobmon schema's database); the work is done in the same
database here, through ``JobmonHook(...).get_conn()``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, get_current_context, task

from jobmon_airflow.callbacks import jobmon_dag_callbacks, jobmon_task_callbacks
from jobmon_airflow.hooks.jobmon import JobmonHook

with DAG(
    "etl_orders",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"fail": False, "rows": 1000},
    default_args={**jobmon_task_callbacks(), "retry_delay": timedelta(seconds=1)},
    **jobmon_dag_callbacks(),
    tags=["pg-jobmon", "example"],
) as dag:

    @task
    def prepare() -> None:
        with JobmonHook().get_conn() as work:
            work.execute("CREATE TABLE IF NOT EXISTS public.orders (id serial, amount numeric)")
            work.commit()

    @task(retries=1)
    def extract() -> int:
        """Fails on its first try, as a flaky source would; the retry succeeds."""
        context = get_current_context()
        if context["ti"].try_number == 1:
            raise ConnectionError("source database is restarting")
        return int(context["params"]["rows"])

    @task
    def load(rows: int) -> None:
        """One transaction; with params.fail a bad row makes it roll back."""
        params = get_current_context()["params"]
        with JobmonHook().get_conn() as work, work.transaction():
            work.execute(
                "INSERT INTO public.orders (amount) SELECT round((random() * 100)::numeric, 2)"
                " FROM generate_series(1, %s)",
                [rows],
            )
            if params["fail"]:
                work.execute("INSERT INTO public.orders (amount) VALUES (-17)")
            [(negative,)] = work.execute(
                "SELECT count(*) FROM public.orders WHERE amount < 0"
            ).fetchall()
            if negative:
                raise ValueError(f"{negative} order(s) with a negative amount")

    prepare() >> load(extract())  # type: ignore[arg-type]  # Airflow types @task arguments without XComArg
