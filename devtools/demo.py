"""The demo (``make demo``): a job whose work transaction fails and rolls back, and the log
that survives it.

It starts an embedded PostgreSQL (or uses ``JOBMON_DEMO_DSN``), installs the jobmon schema
in a fresh database, runs a nightly load twice (once cleanly, once failing in its last step)
and prints what a user would look at afterwards: the work table is back to what the rollback
left, while every step of the failed run is in ``job_log`` and ``job_detail``.
"""

from __future__ import annotations

import time

import psycopg

from devtools import pg
from jobmon_core import Jobmon
from jobmon_core.text import table


def nightly_load(jm: Jobmon, work: psycopg.Connection, *, bad_row: bool) -> None:
    """Load orders in one transaction; with ``bad_row`` the validation step fails."""
    with jm.job("nightly orders load", conn=work) as job, work.transaction():
        with job.step("load orders") as step:
            cur = work.execute(
                "INSERT INTO orders (amount) SELECT (random() * 100)::numeric(8, 2)"
                " FROM generate_series(1, 1000)"
            )
            step.message = f"{cur.rowcount} rows"
        if bad_row:
            work.execute("INSERT INTO orders (amount) VALUES (-17)")
        with job.step("validate totals") as step:
            (negative,) = work.execute("SELECT count(*) FROM orders WHERE amount < 0").fetchone()
            if negative:
                raise ValueError(f"{negative} order(s) with a negative amount")
            step.message = "all amounts positive"


def main() -> None:
    started = time.monotonic()
    print("pg-jobmon demo: starting PostgreSQL ...", flush=True)
    with pg.server("JOBMON_DEMO_DSN") as srv, pg.fresh_database(srv, "jobmon_demo") as dsn:
        print(f"PostgreSQL {srv.version // 10000} is up; installing the jobmon schema\n")
        jm = Jobmon(dsn)
        jm.install()
        with psycopg.connect(dsn) as work:
            work.execute("CREATE TABLE orders (id serial PRIMARY KEY, amount numeric(8, 2))")
            work.commit()
            nightly_load(jm, work, bad_row=False)
            try:
                nightly_load(jm, work, bad_row=True)
            except ValueError as exc:
                print(f"second run failed as planned: {exc!r}; its transaction rolled back\n")
            (orders,) = work.execute("SELECT count(*) FROM orders").fetchone()
            work.rollback()

        with psycopg.connect(dsn) as conn:
            jobs = conn.execute(
                "SELECT job_id, job_name, status, start_time::time(0), end_time - start_time"
                " FROM jobmon.job_log ORDER BY job_id"
            ).fetchall()
            steps = conn.execute(
                "SELECT job_id, step_id, action, status, round(elapsed_time::numeric, 4), message"
                " FROM jobmon.job_detail ORDER BY step_id"
            ).fetchall()
            checks = conn.execute(
                "SELECT job_name, alert_code FROM jobmon.job_check_log ORDER BY job_id"
            ).fetchall()
        jm.close()

    print(f"orders table: {orders} rows (only the first run's 1000 were committed)\n")
    print("jobmon.job_log")
    print(table(["job_id", "job_name", "status", "started", "duration"], jobs) + "\n")
    print("jobmon.job_detail: every step of the failed run survived its rollback")
    print(table(["job_id", "step_id", "action", "status", "seconds", "message"], steps) + "\n")
    print("jobmon.job_check_log: what check_job_status will alert on")
    print(table(["job_name", "alert_code"], checks) + "\n")
    print(f"demo finished in {time.monotonic() - started:.1f} s; the database was dropped")


if __name__ == "__main__":
    main()
