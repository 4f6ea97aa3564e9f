"""The demo (``make demo``): the example DAGs run on an embedded PostgreSQL, then the report
a user would look at.

It starts an embedded PostgreSQL (or uses ``JOBMON_DEMO_DSN``), installs the jobmon schema
in a fresh database, sets up a throwaway Airflow home, and runs the DAGs of
``dags_examples/`` with ``dag.test()``: the ETL twice (the second run fails on purpose, and
its transaction rolls back), the custom operator, the SQL job, and the monitoring DAG, which
fails because of that CRITICAL run. Then it prints every job with its steps and durations,
and ``jobmon check`` in its Nagios form.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
from pathlib import Path

from devtools import airflow_env, pg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "dags_examples"
SQL_EXAMPLE = ROOT / "sql_examples" / "nightly_rollup.sql"


def run_sql_job(dsn: str, fail: bool) -> str:
    """The PL/pgSQL example job, logging through the SQL interface; its state."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SQL_EXAMPLE.read_text(encoding="utf-8"))
        try:
            conn.execute("SELECT nightly_rollup(p_fail => %s)", [fail])
        except psycopg.Error as exc:
            return f"failed ({exc.diag.message_primary}; rolled back, its steps stay logged)"
    return "success"


def run_dag(module_name: str, **conf: object) -> str:
    module = airflow_env.load_dag_file(EXAMPLES / f"{module_name}.py")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        run = module.dag.test(run_conf=conf or None)
    return str(run.state)


def main() -> None:
    started = time.monotonic()
    airflow_env.prepare(EXAMPLES)
    print("pg-jobmon demo: starting PostgreSQL and a throwaway Airflow ...", flush=True)
    with pg.server("JOBMON_DEMO_DSN") as srv, pg.fresh_database(srv, "jobmon_demo") as dsn:
        from jobmon_core import Jobmon
        from jobmon_core.cli import main as jobmon

        jm = Jobmon(dsn)
        jm.install()
        os.environ["AIRFLOW_CONN_JOBMON_DEFAULT"] = airflow_env.jobmon_connection(dsn)
        airflow_env.migrate()
        print(f"PostgreSQL {srv.version // 10000}, jobmon schema installed, Airflow ready\n")

        for name, conf, note in [
            ("etl_orders", {"fail": False}, "extract fails once and is retried"),
            ("etl_orders", {"fail": True}, "fails on purpose: a bad row, rolled back"),
            ("custom_operator_steps", {}, "a custom operator logging its sub-steps"),
            ("sql_job", {}, "JobmonSqlOperator, one step per statement"),
            ("jobmon_monitoring", {}, "the check: fails on the CRITICAL ETL run"),
        ]:
            print(f"  {name + '.py':<26} {run_dag(name, **conf):<8} ({note})", flush=True)
        for fail in (False, True):
            print(f"  {'nightly_rollup.sql':<26} {run_sql_job(dsn, fail)}", flush=True)
        print("\nPrefect (.venv-prefect, a temporary Prefect server):", flush=True)
        prefect_python = str(ROOT / ".venv-prefect" / "bin" / "python")
        subprocess.run(
            [prefect_python, "-m", "devtools.prefect_demo", "--dsn", dsn], check=True, cwd=ROOT
        )

        print("\n== jobmon jobs")
        jobmon(["--dsn", dsn, "jobs", "--limit", "30"])
        for job in reversed(jm.show_job_like(".", limit=30)):
            print(f"\n== jobmon steps {job.job_id}   ({job.job_name}, {job.status or 'running'})")
            jobmon(["--dsn", dsn, "steps", str(job.job_id)])
        print("\n== jobmon check   (a Nagios/Icinga plugin: this exit code would be 2)")
        jobmon(["--dsn", dsn, "check"])
        jm.close()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s; the database was dropped")


if __name__ == "__main__":
    main()
