"""The Prefect half of ``make demo``: the example flows of ``flows_examples/`` run on a
temporary Prefect server and log into the given database, next to the Airflow jobs.

    .venv-prefect/bin/python -m devtools.prefect_demo --dsn DSN [--schema jobmon] [--steps]

Runs, in order: the ETL (its extract retried once), the ETL again with a bad row (its load
rolls back, the log keeps every step), the partition maintenance (the writer's ``job.step()``
inside a task), and the monitoring flow, whose ``jobmon_check`` fails it on the failed ETL
run. Prints one line per flow run (``--steps``: and its steps). About 15-20 s, most of it the
temporary server's start (its SQLite migrations). Prefect gets a ``PREFECT_HOME`` of its own
in a temporary directory, deleted at exit.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from devtools import prefect_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.prefect_demo")
    parser.add_argument("--dsn", required=True, help="the jobmon database")
    parser.add_argument("--schema", default="jobmon", help="the jobmon schema (default jobmon)")
    parser.add_argument("--steps", action="store_true", help="print each flow run's steps")
    args = parser.parse_args(argv)
    started = time.monotonic()
    prefect_env.prepare(log_level="CRITICAL")  # the demo prints its own lines
    os.environ["JOBMON_DSN"] = args.dsn
    os.environ["JOBMON_SCHEMA"] = args.schema
    os.environ.pop("JOBMON_PREFECT_BLOCK", None)

    from flows_examples.etl_orders import etl_orders
    from flows_examples.jobmon_monitoring import jobmon_monitoring
    from flows_examples.partition_steps import partition_maintenance
    from jobmon_core import Jobmon

    runs: list[tuple[str, Callable[[], Any], str]] = [
        (
            "etl_orders.py",
            lambda: etl_orders(rows=100, return_state=True),
            "extract fails once and is retried",
        ),
        (
            "etl_orders.py",
            lambda: etl_orders(rows=100, fail=True, return_state=True),
            "fails on purpose: a bad row, rolled back",
        ),
        (
            "partition_steps.py",
            lambda: partition_maintenance(return_state=True),
            "job.step() inside a task",
        ),
        (
            "jobmon_monitoring.py",
            lambda: jobmon_monitoring(upstream_job=None, return_state=True),
            "jobmon_check: fails on the CRITICAL ETL run",
        ),
    ]
    with Jobmon(args.dsn, schema=args.schema) as jobmon:
        jobmon.install()
        print("Prefect: starting a temporary Prefect server ...", flush=True)
        with prefect_env.temporary_server():
            print(f"Prefect ready after {time.monotonic() - started:.1f} s", flush=True)
            for name, run, note in runs:
                state = run()
                job = the_job(jobmon, state)
                status = job.status if job is not None else "(not logged)"
                print(f"  {name:<26} {state.name:<9} job {status:<9} ({note})", flush=True)
                if args.steps and job is not None:
                    for step in jobmon.show_detail(job.job_id):
                        message = f"  {step.message}" if step.message else ""
                        print(f"      {step.action:<30} {step.status}{message}"[:150])
    print(f"Prefect part finished in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def the_job(jobmon: Any, state: Any) -> Any:
    """The job of the flow run that ended in ``state`` (None if it was not logged)."""
    key = f"prefect:{state.state_details.flow_run_id}"
    return next((j for j in jobmon.show_job_like(".", 50) if j.run_key == key), None)


if __name__ == "__main__":
    raise SystemExit(main())
