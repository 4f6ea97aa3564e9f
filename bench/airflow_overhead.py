"""What the jobmon task callbacks add per task, on real task runs (run by bench/run.py).

    python -m bench.airflow_overhead DSN

A 20-task DAG runs under ``dag.test()`` with each of our callbacks wrapped in a timer, once
with jobmon reachable and once unreachable (connection refused); prints JSON. Each task does
20 ms of "work" (a sleep), the shortest a real task plausibly takes: the start of a try is
logged in the background while the task works, so what a task waits for is the end's write.
The first task of a run opens a new logging connection, as every task does in production
(one process per task try).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from devtools import airflow_env

DAG_FILE = """
import time
from datetime import datetime
from airflow.sdk import DAG, task
from jobmon_airflow.callbacks import jobmon_task_callbacks

TIMES = []

def timed(callback):
    def wrapper(context):
        started = time.perf_counter()
        callback(context)
        TIMES.append((callback.__name__, time.perf_counter() - started))
    return wrapper

callbacks = {name: timed(cb) for name, cb in jobmon_task_callbacks().items()}
with DAG("jobmon_overhead", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         default_args=callbacks) as dag:
    for i in range(20):
        task(task_id=f"t{i}")(lambda: time.sleep(0.02))()
"""


def main(dsn: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pg-jobmon-overhead-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "jobmon_overhead.py").write_text(DAG_FILE)
    airflow_env.prepare(folder)
    airflow_env.migrate()
    module = airflow_env.load_dag_file(folder / "jobmon_overhead.py")
    from jobmon_airflow import runlog

    results = {}
    unreachable = json.dumps({"conn_type": "jobmon", "host": "127.0.0.1", "port": 1, "schema": "x"})
    for label, conn in [
        ("warm-up", airflow_env.jobmon_connection(dsn)),
        ("healthy", airflow_env.jobmon_connection(dsn)),
        ("unreachable", unreachable),
    ]:
        os.environ["AIRFLOW_CONN_JOBMON_DEFAULT"] = conn
        runlog._down_until.clear()
        runlog._jobmons.clear()
        module.TIMES.clear()
        module.dag.test()
        execute = [t for name, t in module.TIMES if name == "on_execute"]
        success = [t for name, t in module.TIMES if name == "on_success"]
        per_task = [(a + b) * 1000 for a, b in zip(execute, success, strict=True)]
        if label != "warm-up":
            results[label] = {
                "median_ms": statistics.median(per_task),
                "first_ms": per_task[0],
                "max_ms": max(per_task),
                "tasks": len(per_task),
            }
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
