"""What pg-jobmon costs Prefect flows, on real flow runs against a temporary Prefect server.

    .venv-prefect/bin/python -m bench.prefect_overhead [--quick] --dsn DSN --json PATH

Two figures, side by side in one run:

1. **The hooks**: a flow of N sequential tasks (20 ms of work each, as in the Airflow
   benchmark) runs with and without ``jobmon_flow_hooks()``/``jobmon_task_hooks()``, rounds
   alternating. The hooks are wrapped in timers: what a task waits for in its hooks (they
   queue the write for the process's background writer), and the flow's wall time per task,
   which includes the end's wait for the last writes and a new logging connection per run,
   as every flow run in a fresh process (a worker, a runner) opens one. Target: < 5 ms per
   task, as for Airflow.
2. **The zero-code follower**: a flow without hooks runs while :mod:`jobmon_prefect.follower`
   follows the server's events in a thread; the delay is each row's ``start_time`` minus the
   Prefect state's timestamp (the same clock: one machine), for the job and for each step.
   Target: a median under 2 s.

Prints its section; ``--json`` writes ``{"figures": {...}, "targets": [...]}`` for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from devtools import prefect_env

SCHEMA = "jobmon_bench_prefect"
TARGET_HOOK_MS = 5.0
TARGET_FOLLOW_S = 2.0
WORK_S = 0.02
"""What each benchmark task does (a sleep): the shortest a real task plausibly takes, as in
the Airflow benchmark."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prefect_overhead")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--json", help="write the figures and targets here")
    parser.add_argument("--quick", action="store_true", help="fewer tasks and rounds")
    args = parser.parse_args(argv)
    prefect_env.prepare(log_level="ERROR")
    os.environ["JOBMON_DSN"] = args.dsn
    os.environ["JOBMON_SCHEMA"] = SCHEMA
    os.environ.pop("JOBMON_PREFECT_BLOCK", None)

    from jobmon_core import Jobmon

    tasks, rounds = (20, 3) if args.quick else (50, 7)
    print("\n9. Prefect: what pg-jobmon adds to real flow runs (temporary Prefect server)")
    started = time.monotonic()
    with Jobmon(args.dsn, schema=SCHEMA) as jobmon:
        jobmon.install()
        try:
            with prefect_env.temporary_server():
                server_s = time.monotonic() - started
                print(f"   temporary Prefect server up in {server_s:.1f} s")
                hooks = bench_hooks(tasks, rounds)
                follower = bench_follower(jobmon, tasks)
        finally:
            from jobmon_prefect.destination import close_all

            close_all()
            drop_schema(args.dsn)
    figures: dict[str, Any] = {
        "server_start_s": server_s,
        "tasks": tasks,
        "rounds": rounds,
        **hooks,
        **follower,
    }
    targets = [
        {
            "name": f"Prefect hooks < {TARGET_HOOK_MS:.0f} ms per task",
            "met": max(hooks["wall_ms_per_task"], hooks["hook_ms_per_task"]) < TARGET_HOOK_MS,
            "detail": f"{hooks['wall_ms_per_task']:+.2f} ms per task on the flow's wall time "
            f"(new connection and the end's wait included); a task waits "
            f"{hooks['hook_ms_per_task']:.3f} ms in its hooks",
        },
        {
            "name": f"zero-code follower: state change to row, median < {TARGET_FOLLOW_S:.0f} s",
            "met": follower["follow_step_median_s"] < TARGET_FOLLOW_S,
            "detail": f"steps median {follower['follow_step_median_s']:.3f} s, max "
            f"{follower['follow_step_max_s']:.3f} s; job {follower['follow_job_s']:.3f} s",
        },
    ]
    for each in targets:
        print(f"   target {'MET ' if each['met'] else 'MISSED'}: {each['name']}: {each['detail']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"figures": figures, "targets": targets}, out, indent=2, default=str)
    return 0


def timed(hook: Callable[..., None], into: list[float]) -> Callable[..., None]:
    def timed_hook(*args: Any) -> None:
        began = time.perf_counter()
        hook(*args)
        into.append(time.perf_counter() - began)

    return timed_hook


def timed_all(hooks: Mapping[str, Any], into: list[float]) -> dict[str, Any]:
    """The same hooks, each wrapped in a timer."""
    return {name: [timed(hook, into) for hook in hooks[name]] for name in hooks}


def bench_hooks(tasks: int, rounds: int) -> dict[str, float]:
    from prefect import flow, task

    from jobmon_prefect import jobmon_flow_hooks, jobmon_task_hooks
    from jobmon_prefect.destination import close_all

    task_times: list[float] = []
    flow_times: list[float] = []
    task_hooks = timed_all(jobmon_task_hooks(), task_times)
    flow_hooks = timed_all(jobmon_flow_hooks(), flow_times)
    body: list[float] = []

    def work() -> None:
        time.sleep(WORK_S)

    plain_task = task(name="work")(work)
    hooked_task = task(name="work", **task_hooks)(work)  # type: ignore[arg-type]

    @flow(name="bench-plain")
    def plain() -> None:
        began = time.perf_counter()
        for _ in range(tasks):
            plain_task()
        body.append(time.perf_counter() - began)

    @flow(name="bench-hooked", **flow_hooks)
    def hooked() -> None:
        began = time.perf_counter()
        for _ in range(tasks):
            hooked_task()
        body.append(time.perf_counter() - began)

    plain()  # warm up both: imports, the server's caches
    hooked()
    costs: dict[str, list[float]] = {"plain": [], "hooked": []}
    in_hooks: list[float] = []
    first: list[float] = []
    end: list[float] = []
    for _ in range(rounds):
        for name, run in (("plain", plain), ("hooked", hooked)):
            if name == "hooked":
                close_all()  # this run opens a new logging connection, as a new process does
                task_times.clear()
                flow_times.clear()
            body.clear()
            run()
            # the tasks' wall time, plus for the hooks what the flow's start and end wait for
            # (the end waits until the queued writes are in): the flow's own start-up, an
            # API round trip that the server sometimes retries, is left out as noise
            costs[name].append(body[0] + (sum(flow_times) if name == "hooked" else 0.0))
        in_hooks.append(sum(task_times) / tasks)
        first.append(flow_times[0])
        end.append(flow_times[-1])
    plain_s, hooked_s = statistics.median(costs["plain"]), statistics.median(costs["hooked"])
    # jobmon unreachable (connection refused): the first write warns and starts the back-off
    reachable = os.environ["JOBMON_DSN"]
    os.environ["JOBMON_DSN"] = "postgresql://nobody@127.0.0.1:1/nowhere"
    try:
        close_all()
        flow_times.clear()
        body.clear()
        hooked()
        outage_s = body[0] + sum(flow_times)
    finally:
        os.environ["JOBMON_DSN"] = reachable
        close_all()
    figures = {
        "hook_ms_per_task": statistics.median(in_hooks) * 1000,
        "wall_ms_per_task": (hooked_s - plain_s) / tasks * 1000,
        "flow_start_hook_ms": statistics.median(first) * 1000,
        "flow_end_wait_ms": statistics.median(end) * 1000,
        "plain_s": plain_s,
        "hooked_s": hooked_s,
        "unreachable_ms_per_task": (outage_s - plain_s) / tasks * 1000,
    }
    print(
        f"   hooks ({tasks} tasks of {WORK_S * 1000:.0f} ms each, median of {rounds} rounds): "
        f"a task waits {figures['hook_ms_per_task']:.3f} ms in its hooks; the flow takes "
        f"{figures['wall_ms_per_task']:+.2f} ms per task ({plain_s:.3f} s without, "
        f"{hooked_s:.3f} s with, new logging connection included); the flow run's end waits "
        f"{figures['flow_end_wait_ms']:.1f} ms for the last writes; with jobmon unreachable "
        f"{figures['unreachable_ms_per_task']:+.2f} ms per task (one warning)"
    )
    return figures


def bench_follower(jobmon: Any, tasks: int) -> dict[str, float]:
    import asyncio

    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from jobmon_prefect.follower import Follower, follow

    @task(name="followed")
    def followed() -> None:
        time.sleep(0.01)

    @flow(name="bench-followed")
    def unmodified() -> None:
        for _ in range(tasks):
            followed()

    stop, ready = threading.Event(), threading.Event()
    observer = Follower(grace=1.0)
    thread = threading.Thread(
        target=lambda: asyncio.run(follow(stop=stop, ready=ready, follower=observer)),
        daemon=True,
    )
    thread.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the follower did not subscribe within 30 s")
        state = unmodified(return_state=True)
        flow_run_id = state.state_details.flow_run_id
        assert flow_run_id is not None
        key = f"prefect:{flow_run_id}"
        deadline = time.monotonic() + 30
        job = None
        while time.monotonic() < deadline:
            jobs = [j for j in jobmon.show_job("bench-followed", 5) if j.run_key == key]
            if jobs and jobs[0].end_time is not None:
                job = jobs[0]
                break
            time.sleep(0.1)
        if job is None:
            raise RuntimeError("the follower did not log the flow run within 30 s")
    finally:
        stop.set()
        thread.join(10)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    started = {f"{t.id}#1": t.start_time for t in task_runs}
    delays = [
        (step.start_time - started[step.step_key]).total_seconds()
        for step in jobmon.show_detail(job.job_id)
        if step.step_key in started and started[step.step_key] is not None
    ]
    assert flow_run.start_time is not None
    figures = {
        "follow_job_s": (job.start_time - flow_run.start_time).total_seconds(),
        "follow_step_median_s": statistics.median(delays),
        "follow_step_max_s": max(delays),
        "follow_steps": len(delays),
        "event_lag_median_s": statistics.median(observer.lags),
        "event_lag_max_s": max(observer.lags),
    }
    print(
        f"   zero-code follower: state change to row {figures['follow_step_median_s']:.3f} s "
        f"median, {figures['follow_step_max_s']:.3f} s max ({len(delays)} steps); the job's "
        f"row {figures['follow_job_s']:.3f} s; of which "
        f"Prefect's delivery of the events {figures['event_lag_median_s']:.3f} s median, "
        f"{figures['event_lag_max_s']:.3f} s max; cost inside the flow: none"
    )
    return figures


def drop_schema(dsn: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


if __name__ == "__main__":
    raise SystemExit(main())
