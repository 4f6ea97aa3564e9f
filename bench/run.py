"""pg-jobmon benchmarks: every contender measured side by side, in the same run.

    python -m bench.run [--quick] [--json bench/results/latest.json]

Sections (see bench/README.md): 1. the writer per logged step and per job, against the
floor (raw psycopg) and the original design (a new dblink connection per call, from
PL/pgSQL), with 2. the buffered mode; 3. check_job_status at scale; 4. writers under
concurrency; 5. the Airflow callbacks' cost per task; 6. log growth and job_log_clear;
7. the SQL interface: a step logged from PL/pgSQL over the kept dblink connection; 8. what
"runs too long" limits cost the check (bench/check_durations.py); 9. the Prefect hooks per
task and the zero-code follower's delay (bench/prefect_overhead.py, in .venv-prefect);
10. every page of the web app, server-side, at 10^6 job_log rows (bench/web_pages.py).
Rounds are interleaved so machine noise hits every contender alike; each figure is the
median of the rounds, with the spread (min-max) and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from devtools import pg
from jobmon_core import Jobmon
from jobmon_core.alerts import Alert
from jobmon_core.plugins import AlertChange, hookimpl, new_plugin_manager

RESULTS: dict[str, Any] = {}
TARGETS: list[tuple[str, bool, str]] = []
SETTLE_SECONDS = 0.02
"""Pause before each timed block, so one contender's after-effects do not land on the next."""
WARM_CALLS = 3
"""Untimed calls before each timed block (caches, prepared statements)."""


def say(text: str = "") -> None:
    print(text, flush=True)


def _one(cur: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The one row a statement returns (psycopg types ``fetchone()`` as maybe ``None``)."""
    row = cur.fetchone()
    assert row is not None
    return row


def target(name: str, met: bool, detail: str) -> None:
    TARGETS.append((name, met, detail))
    say(f"   target {name}: {'MET' if met else 'MISSED'} ({detail})")


def interleaved(
    contenders: Mapping[str, Callable[[], object]], rounds: int, per_round: int
) -> dict:
    """ms per call of each contender: median and spread over interleaved rounds.

    The order rotates each round, so every contender runs first, last and after each of the
    others equally often: a slow contender (the per-call-connection one forks a backend per
    call) leaves the machine busy for a few ms, and a fixed order would always hand that
    bill to the same neighbour. A few untimed calls and a short pause before each timed
    block let that settle."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if (r // len(names)) % 2:
            order.reverse()
        for name in order:
            run = contenders[name]
            time.sleep(SETTLE_SECONDS)
            for _ in range(WARM_CALLS):
                run()
            started = time.perf_counter()
            for _ in range(per_round):
                run()
            times[name].append((time.perf_counter() - started) / per_round * 1000)
    return {
        n: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t)}
        for n, t in times.items()
    }


def ratio_table(results: dict, floor_ms: float, what: str) -> None:
    """Each contender's median, spread and ratio to the floor, as a table."""
    table(
        [
            (
                n,
                f"{r['median_ms']:.4f}",
                f"{r['min_ms']:.4f}-{r['max_ms']:.4f}",
                f"{r['median_ms'] / floor_ms:.2f}x",
            )
            for n, r in results.items()
        ],
        (what, "median ms", "spread ms", "vs floor"),
    )


def table(rows: list[tuple], headers: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    say("   " + "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        say("   " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


# -- 1 and 2: the writer ------------------------------------------------------------------------

DBLINK_FUNCTIONS = """
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE OR REPLACE FUNCTION bench_percall_add_step(p_conn text, p_job bigint, p_action text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN  -- a new connection for this one call, as the original extension does
    SELECT id INTO v_id FROM dblink(p_conn, format(
        'INSERT INTO jobmon.job_detail (job_id, action, start_time) VALUES (%s, %L, now())'
        ' RETURNING step_id', p_job, p_action), true) AS t(id bigint);
    RETURN v_id;
END $$;
CREATE OR REPLACE FUNCTION bench_percall_update_step(p_conn text, p_step bigint, p_status text,
                                                     p_message text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec(p_conn, format(
        'UPDATE jobmon.job_detail SET end_time = now(), elapsed_time ='
        ' date_part(''epoch'', now() - start_time)::real, status = %L, message = %L'
        ' WHERE step_id = %s', p_status, p_message, p_step), true);
END $$;
CREATE OR REPLACE FUNCTION bench_percall_add_job(p_conn text, p_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    SELECT id INTO v_id FROM dblink(p_conn, format(
        'INSERT INTO jobmon.job_log (owner, job_name, start_time, pid)'
        ' VALUES (current_user, upper(%L), now(), %s) RETURNING job_id', p_name,
        pg_backend_pid()), true) AS t(id bigint);
    RETURN v_id;
END $$;
CREATE OR REPLACE FUNCTION bench_percall_close_job(p_conn text, p_job bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec(p_conn, format(
        'UPDATE jobmon.job_log SET end_time = now(), status = ''OK'' WHERE job_id = %s', p_job),
        true);
END $$;
"""


def bench_writer(dsn: str, quick: bool) -> None:
    say(
        "1. the writer: one logged step (add_step + update_step), and one job (add_job + close_job)"
    )
    jm = Jobmon(dsn)
    buffered = Jobmon(dsn, buffered=True, flush_interval=60, max_buffer=1000)
    raw = psycopg.connect(dsn, autocommit=True)
    raw.prepare_threshold = 0
    client = psycopg.connect(dsn, autocommit=True)
    job, bjob = jm.add_job("bench steps"), buffered.add_job("bench buffered")
    try:
        client.execute(DBLINK_FUNCTIONS)
        percall_conn: str | None = dsn
    except psycopg.Error as exc:
        percall_conn = None
        say(
            f"   (per-call-connection contender skipped: {str(exc).splitlines()[0]};"
            " use a server with contrib, e.g. JOBMON_BENCH_DSN=$(bash .ci/pg15-dsn))"
        )
    insert = "INSERT INTO jobmon.job_detail (job_id, action, start_time) VALUES (%s, %s, now()) RETURNING step_id"  # noqa: E501
    update = (
        "UPDATE jobmon.job_detail SET end_time = now(), elapsed_time = date_part('epoch',"
        " now() - start_time)::real, status = %s, message = %s WHERE step_id = %s"
    )

    def floor() -> None:
        (step,) = _one(raw.execute(insert, [job, "step"]))
        raw.execute(update, ["OK", "done", step])

    def ours() -> None:
        jm.update_step(jm.add_step(job, "step"), "OK", "done")

    def ours_buffered() -> None:
        buffered.update_step(buffered.add_step(bjob, "step"), "OK", "done")

    def percall() -> None:
        (step,) = _one(
            client.execute("SELECT bench_percall_add_step(%s, %s, %s)", [percall_conn, job, "step"])
        )
        client.execute(
            "SELECT bench_percall_update_step(%s, %s, %s, %s)", [percall_conn, step, "OK", "done"]
        )

    def hundred_buffered() -> None:  # 100 steps and the flush that writes them
        for _ in range(100):
            ours_buffered()
        buffered.flush()

    contenders: dict[str, Callable[[], None]] = {
        "floor (raw psycopg)": floor,
        "ours (durable)": ours,
    }
    if percall_conn:
        contenders["original design (dblink per call)"] = percall
    rounds, per_round = (8, 100) if quick else (10, 500)
    steps = interleaved(contenders, rounds, per_round)
    batch = interleaved({"b": hundred_buffered}, rounds, max(1, per_round // 100))["b"]
    steps["ours (buffered)"] = {k: v / 100 for k, v in batch.items()}
    floor_ms = steps["floor (raw psycopg)"]["median_ms"]
    ratio_table(steps, floor_ms, "per logged step")
    RESULTS["writer_step"] = steps
    ours_ms = steps["ours (durable)"]["median_ms"]
    target("ours <= 1.3x floor", ours_ms <= 1.3 * floor_ms, f"{ours_ms / floor_ms:.2f}x")
    if percall_conn:
        old = steps["original design (dblink per call)"]["median_ms"]
        target(
            ">= 15x faster than per-call connections", old / ours_ms >= 15, f"{old / ours_ms:.1f}x"
        )
    fast = steps["ours (buffered)"]["median_ms"]
    target(
        "buffered >= 10x faster than the durable floor",
        floor_ms / fast >= 10,
        f"{floor_ms / fast:.1f}x",
    )

    def job_floor() -> None:
        (j,) = _one(
            raw.execute(
                "INSERT INTO jobmon.job_log (owner, job_name, start_time, pid) VALUES"
                " (current_user, 'RAW', now(), pg_backend_pid()) RETURNING job_id"
            )
        )
        raw.execute(
            "UPDATE jobmon.job_log SET end_time = now(), status = 'OK' WHERE job_id = %s", [j]
        )

    def job_ours() -> None:
        jm.close_job(jm.add_job("ours"))

    def job_percall() -> None:
        (j,) = _one(client.execute("SELECT bench_percall_add_job(%s, 'percall')", [percall_conn]))
        client.execute("SELECT bench_percall_close_job(%s, %s)", [percall_conn, j])

    jobs = {"floor (raw psycopg)": job_floor, "ours (durable)": job_ours}
    if percall_conn:
        jobs["original design (dblink per call)"] = job_percall
    job_times = interleaved(jobs, rounds, per_round // 5)
    floor_ms = job_times["floor (raw psycopg)"]["median_ms"]
    table(
        [
            (n, f"{r['median_ms']:.4f}", f"{r['median_ms'] / floor_ms:.2f}x")
            for n, r in job_times.items()
        ],
        ("per job (add + close)", "median ms", "vs floor"),
    )
    RESULTS["writer_job"] = job_times
    for closing in (jm, buffered):
        closing.close()
    raw.close()
    client.close()


# -- 7: the SQL interface, from PL/pgSQL --

SQL_STEPS = """
CREATE OR REPLACE FUNCTION bench_sql_steps(p_how text, p_conn text, p_job bigint, p_steps int)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE v_step bigint;
BEGIN  -- p_steps logged steps (add_step + update_step) inside one PL/pgSQL call
    FOR i IN 1..p_steps LOOP
        IF p_how = 'floor' THEN  -- plain DML in the caller's transaction: not durable
            INSERT INTO jobmon.job_detail (job_id, action, start_time)
            VALUES (p_job, 'step', now()) RETURNING step_id INTO v_step;
            UPDATE jobmon.job_detail SET end_time = now(), elapsed_time =
                date_part('epoch', now() - start_time)::real, status = 'OK', message = 'done'
             WHERE step_id = v_step;
        ELSIF p_how = 'ours' THEN
            PERFORM jobmon.update_step(jobmon.add_step(p_job, 'step'), 'OK', 'done');
        ELSE
            PERFORM bench_percall_update_step(p_conn,
                bench_percall_add_step(p_conn, p_job, 'step'), 'OK', 'done');
        END IF;
    END LOOP;
END $$;
"""


def bench_sql_interface(dsn: str, quick: bool) -> None:
    say(
        "7. the SQL interface: one step logged from PL/pgSQL (add_step + update_step), "
        "non-transactional"
    )
    client = psycopg.connect(dsn, autocommit=True)
    try:
        client.execute(DBLINK_FUNCTIONS)
        client.execute(SQL_STEPS)
        (job,) = _one(client.execute("SELECT jobmon.add_job('bench sql interface')"))
    except psycopg.Error as exc:
        say(f"   (skipped: {str(exc).splitlines()[0]}; the SQL interface needs dblink)")
        client.close()
        return
    per_call = 10 if quick else 20

    def run(how: str) -> Callable[[], None]:
        def one_call() -> None:
            client.execute("SELECT bench_sql_steps(%s, %s, %s, %s)", [how, dsn, job, per_call])

        return one_call

    contenders = {
        "floor (plain DML, rolled back with the caller)": run("floor"),
        "ours (kept dblink connection)": run("ours"),
        "original design (dblink per call)": run("percall"),
    }
    rounds, per_round = (6, 2) if quick else (10, 5)
    calls = interleaved(contenders, rounds, per_round)
    steps = {n: {k: v / per_call for k, v in r.items()} for n, r in calls.items()}
    floor_ms = steps["floor (plain DML, rolled back with the caller)"]["median_ms"]
    ratio_table(steps, floor_ms, "per step from PL/pgSQL")
    RESULTS["sql_interface_step"] = steps
    ours = steps["ours (kept dblink connection)"]["median_ms"]
    old = steps["original design (dblink per call)"]["median_ms"]
    target(
        "SQL interface >= 10x faster than per-call connections",
        old / ours >= 10,
        f"{old / ours:.1f}x",
    )
    client.close()


# -- 9: the Prefect hooks and the zero-code follower, in Prefect's own environment --

ROOT = Path(__file__).resolve().parent.parent
PREFECT_PYTHON = ROOT / ".venv-prefect" / "bin" / "python"


def bench_prefect(dsn: str, quick: bool) -> None:
    """bench/prefect_overhead.py, run with .venv-prefect's Python (the airflow and prefect
    extras conflict, so no one environment has both); its figures and targets join ours."""
    out = Path(tempfile.mkdtemp(prefix="jobmon-bench-prefect-")) / "prefect.json"
    command = [str(PREFECT_PYTHON), "-m", "bench.prefect_overhead", "--dsn", dsn]
    command += ["--json", str(out)] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"9. the Prefect hooks: could not run ({exc}); run `make setup` first")
        return
    if done.returncode != 0 or not out.exists():
        say(f"9. the Prefect hooks: failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        TARGETS.append(("Prefect bench runs", False, f"exit {done.returncode}"))
        return
    for line in done.stdout.splitlines():
        if not line.lstrip().startswith("target "):
            say(line)
    data = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    RESULTS["prefect"] = data["figures"]
    for t in data["targets"]:
        target(t["name"], t["met"], t["detail"])


class _QuietNotifier:
    """A notifier that takes every change: what a shared-state check costs beyond the check
    itself (its own connection, a lock on job_alert_state, the diff) without a webhook."""

    @hookimpl
    def jobmon_alerts_found(self, alerts: list[Alert], changes: list[AlertChange]) -> None:
        return None


# -- 3: the check at scale --

GENERATE = """
INSERT INTO jobmon.job_log (owner, job_name, start_time, end_time, status, pid)
SELECT 'etl', 'JOB ' || (g %% 300), now() - (g::float8 / %(n)s) * interval '30 days',
       now() - (g::float8 / %(n)s) * interval '30 days' + interval '30 seconds',
       CASE WHEN g %% 50 = 0 THEN 'CRITICAL' ELSE 'OK' END, 1000 + g %% 5000
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
"""

# The original design's check, rebuilt for comparison: aggregates over the history window.
WINDOW_SCAN = """
SELECT c.job_name, max(j.start_time), max(j.end_time)
  FROM jobmon.job_check_config c JOIN jobmon.job_log j ON j.job_name = c.job_name
 WHERE c.active AND j.start_time > now() - %s::interval GROUP BY c.job_name
"""


def grow_log(conn: psycopg.Connection, have: int, want: int) -> None:
    step = 1_000_000
    for first in range(have + 1, want + 1, step):
        last = min(want, first + step - 1)
        conn.execute(GENERATE, {"n": want, "first": first, "last": last})
        conn.execute(
            "INSERT INTO jobmon.job_detail (job_id, action, start_time, end_time, elapsed_time,"
            " status) SELECT job_id, 'step ' || s, start_time, end_time, 10, 'OK'"
            " FROM jobmon.job_log, generate_series(1, 3) s WHERE job_id > %s",
            [have],
        )
        have = last
    conn.execute("VACUUM ANALYZE jobmon.job_log")
    conn.execute("VACUUM ANALYZE jobmon.job_detail")


def bench_check(srv: pg.Server, quick: bool) -> None:
    say("\n3. check_job_status() at scale (300 job names, 100 configured, 30 days, 2% failing)")
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000, 10_000_000]
    rows_out = []
    with pg.fresh_database(srv, "jobmon_bench_check") as dsn:
        Jobmon(dsn).install()
        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute(
            "INSERT INTO jobmon.job_check_config SELECT 'JOB ' || g, '1 hour', '2 hours', true, 0,"
            " NULL FROM generate_series(0, 99) g"
        )
        conn.execute(
            "INSERT INTO jobmon.job_check_log (job_id, job_name, alert_code)"
            " SELECT 0, 'JOB ' || g, 3 FROM generate_series(0, 299, 7) g, generate_series(1, 3)"
        )
        jm = Jobmon(dsn)
        notifying = new_plugin_manager(load_entry_points=False)
        notifying.register(_QuietNotifier())
        shared = Jobmon(dsn, plugins=notifying)
        writer_job = jm.add_job("bench growth")

        def step() -> None:
            jm.update_step(jm.add_step(writer_job, "step"), "OK", None)

        have = 0
        for size in sizes:
            started = time.perf_counter()
            grow_log(conn, have, size)
            have = size
            load_s = time.perf_counter() - started
            checks = {
                "ours check_job_status()": lambda: jm.check_job_status(),
                "ours check_job_status('7 days')": lambda: jm.check_job_status(timedelta(days=7)),
                "ours, shared alert state, a notifier": lambda: shared.check_job_status(
                    shared_state=True
                ),
                "window scan ('7 days'), original design": lambda: conn.execute(
                    WINDOW_SCAN, ["7 days"]
                ).fetchall(),
            }
            result = interleaved(checks, 5, 10)
            step_ms = interleaved({"step": step}, 3, 200)["step"]["median_ms"]
            cli_times = []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "jobmon_core.cli", "--dsn", dsn, "check"],
                    capture_output=True,
                    check=False,
                )
                cli_times.append((time.perf_counter() - started) * 1000)
            rows_out.append(
                (
                    f"{size:,}",
                    f"{load_s:.0f} s",
                    *(f"{r['median_ms']:.2f}" for r in result.values()),
                    f"{statistics.median(cli_times):.0f}",
                    f"{step_ms:.3f}",
                )
            )
            RESULTS.setdefault("check", {})[str(size)] = {
                **{k: v["median_ms"] for k, v in result.items()},
                "jobmon check process ms": statistics.median(cli_times),
                "writer step ms": step_ms,
            }
        table(
            rows_out,
            (
                "job_log rows",
                "load",
                "ours() ms",
                "ours(7d) ms",
                "shared state ms",
                "window scan ms",
                "`jobmon check` ms",
                "writer step ms",
            ),
        )
        largest = RESULTS["check"][str(sizes[-1])]["ours check_job_status()"]
        smallest = RESULTS["check"][str(sizes[0])]["ours check_job_status()"]
        target(f"check < 5 ms at {sizes[-1]:,} rows", largest < 5, f"{largest:.2f} ms")
        target(
            "check flat across sizes",
            largest < 2 * smallest + 1,
            f"{smallest:.2f} -> {largest:.2f} ms",
        )
        first_step = RESULTS["check"][str(sizes[0])]["writer step ms"]
        last_step = RESULTS["check"][str(sizes[-1])]["writer step ms"]
        target(
            f"writer does not degrade from {sizes[0]:,} to {sizes[-1]:,} rows",
            last_step < 1.5 * first_step + 0.05,
            f"{first_step:.3f} -> {last_step:.3f} ms per step, {last_step / first_step:.2f}x",
        )
        plan = conn.execute(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)"
            " SELECT * FROM jobmon.check_job_status('7 days')"
        ).fetchall()
        RESULTS["check_plan_top"] = [r[0] for r in plan]
        say(
            "   plan of check_job_status (a plpgsql call; its inner statement uses, per configured"
            " job, job_log_job_name_start_time_idx and job_log_job_name_end_time_idx)"
        )
        inner = conn.execute(
            "EXPLAIN (COSTS OFF) SELECT s.start_time FROM jobmon.job_check_config c LEFT JOIN"
            " LATERAL (SELECT j.start_time FROM jobmon.job_log j WHERE j.job_name = c.job_name"
            " AND j.start_time > now() - interval '7 days' ORDER BY j.start_time DESC LIMIT 1)"
            " s ON true WHERE c.active"
        ).fetchall()
        for (line,) in inner:
            say(f"     {line}")
        RESULTS["check_plan_latest_run"] = [r[0] for r in inner]
        jm.close()
        shared.close()
        conn.close()


# -- 4: concurrency --


def _writer_process(dsn: str, steps: int, barrier, out) -> None:  # a child process
    jm = Jobmon(dsn)
    job = jm.add_job(f"concurrent {os.getpid()}")
    latencies = []
    barrier.wait()
    for _ in range(steps):
        started = time.perf_counter()
        jm.update_step(jm.add_step(job, "step"), "OK", None)
        latencies.append(time.perf_counter() - started)
    jm.close_job(job)
    out.put(latencies)


def bench_concurrency(dsn: str, quick: bool) -> None:
    say("\n4. writers under concurrency: processes logging steps at once")
    steps = 100 if quick else 1000
    ctx = multiprocessing.get_context("spawn")
    rows_out = []
    for n in (1, 4, 16, 32):
        barrier, out = ctx.Barrier(n + 1), ctx.Queue()
        procs = [
            ctx.Process(target=_writer_process, args=(dsn, steps, barrier, out)) for _ in range(n)
        ]
        for p in procs:
            p.start()
        barrier.wait()
        started = time.perf_counter()
        latencies = [x for _ in procs for x in out.get(timeout=600)]
        elapsed = time.perf_counter() - started
        for p in procs:
            p.join()
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        rate = len(latencies) / elapsed
        rows_out.append(
            (n, f"{rate:,.0f}", f"{statistics.median(latencies) * 1000:.2f}", f"{p99:.2f}")
        )
        RESULTS.setdefault("concurrency", {})[str(n)] = {"steps_per_s": rate, "p99_ms": p99}
    table(rows_out, ("processes", "steps/s", "median ms", "p99 ms"))


# -- 5: Airflow --


def bench_airflow(dsn: str, quick: bool) -> None:
    say("\n5. Airflow: what the jobmon callbacks add per task (20-task DAG, real task runs)")
    runs = []
    for _ in range(1 if quick else 3):  # each run in a fresh process
        result = subprocess.run(
            [sys.executable, "-m", "bench.airflow_overhead", dsn],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            say(f"   failed: {result.stderr.strip().splitlines()[-1:]}")
            return
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    data = {
        label: {
            stat: statistics.median(run[label][stat] for run in runs)
            for stat in ("median_ms", "first_ms", "max_ms")
        }
        for label in runs[0]
    }
    RESULTS["airflow"] = {"runs": runs, "median_of_runs": data}
    table(
        [
            (k, f"{v['median_ms']:.2f}", f"{v['first_ms']:.2f}", f"{v['max_ms']:.2f}")
            for k, v in data.items()
        ],
        ("jobmon", "median ms/task", "new-connection task ms", "max ms"),
    )
    say(
        f"   (median of {len(runs)} fresh processes; a new-connection task is what every task"
        " pays in production, where each task try runs in a process of its own)"
    )
    healthy = data["healthy"]
    worst = max(healthy["median_ms"], healthy["first_ms"])
    target(
        "callbacks < 5 ms per task, new connection included",
        worst < 5,
        f"{healthy['median_ms']:.2f} ms warm, {healthy['first_ms']:.2f} ms with a new connection",
    )
    outage = data["unreachable"]
    target(
        "an outage costs the connect timeout once, not per call",
        outage["median_ms"] < 1 and outage["first_ms"] < 6000,
        f"first {outage['first_ms']:.1f} ms, then median {outage['median_ms']:.3f} ms",
    )


# -- 6: log growth --


def bench_growth(srv: pg.Server, quick: bool) -> None:
    say("\n6. log growth: the writer on a big log, and job_log_clear")
    size = 100_000 if quick else 1_000_000
    with pg.fresh_database(srv, "jobmon_bench_growth") as dsn:
        Jobmon(dsn).install()
        conn = psycopg.connect(dsn, autocommit=True)
        jm = Jobmon(dsn)
        job = jm.add_job("growth")

        def step() -> None:
            jm.update_step(jm.add_step(job, "step"), "OK", None)

        empty = interleaved({"step": step}, 3, 200)["step"]["median_ms"]
        grow_log(conn, 0, size)
        big = interleaved({"step": step}, 3, 200)["step"]["median_ms"]
        say(
            f"   per step: {empty:.3f} ms on an empty log, {big:.3f} ms with {size:,} runs"
            f" ({3 * size:,} steps)"
        )
        RESULTS["growth"] = {"empty_ms": empty, "big_ms": big, "rows": size}
        target("no degradation on a big log", big < 1.5 * empty + 0.05, f"{big / empty:.2f}x")
        latencies: list[float] = []
        stop = threading.Event()

        def writer() -> None:
            other = Jobmon(dsn)
            j = other.add_job("during clear")
            while not stop.is_set():
                started = time.perf_counter()
                other.update_step(other.add_step(j, "step"), "OK", None)
                latencies.append(time.perf_counter() - started)
            other.close()

        thread = threading.Thread(target=writer)
        thread.start()
        started = time.perf_counter()
        deleted = jm.job_log_clear(timedelta(days=0))
        clear_s = time.perf_counter() - started
        stop.set()
        thread.join()
        worst = max(latencies) * 1000
        say(
            f"   job_log_clear: {deleted:,} runs (and their steps) in {clear_s:.1f} s; a concurrent"
            f" writer logged {len(latencies):,} steps meanwhile, slowest {worst:.1f} ms"
        )
        RESULTS["clear"] = {"runs": deleted, "seconds": clear_s, "writer_max_ms": worst}
        target("writers not blocked by the purge", worst < 1000, f"slowest step {worst:.1f} ms")
        jm.close()
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    with pg.server("JOBMON_BENCH_DSN") as srv:
        say(
            f"pg-jobmon benchmarks ({'quick' if args.quick else 'full'}) on PostgreSQL"
            f" {srv.version // 10000}, {platform.machine()}, {os.cpu_count()} cores,"
            f" Python {platform.python_version()}\n"
        )
        with pg.fresh_database(srv, "jobmon_bench") as dsn:
            Jobmon(dsn).install()
            bench_writer(dsn, args.quick)
            bench_concurrency(dsn, args.quick)
            bench_airflow(dsn, args.quick)
            bench_sql_interface(dsn, args.quick)
            bench_prefect(dsn, args.quick)
        bench_check(srv, args.quick)
        # imported here, not at the top: the concurrency section's child processes import
        # this module, and need neither the web stack nor these sections
        from bench.check_durations import bench_durations
        from bench.web_pages import bench_web

        with pg.fresh_database(srv, "jobmon_bench_durations") as dsn:
            RESULTS["durations"] = bench_durations(dsn, args.quick, say, target)
        bench_growth(srv, args.quick)
        RESULTS["web"] = bench_web(srv, args.quick, say, target)
        RESULTS["server_version"] = srv.version
    RESULTS["targets"] = [{"name": n, "met": m, "detail": d} for n, m, d in TARGETS]
    RESULTS["when"] = datetime.now(UTC).isoformat()
    RESULTS["quick"] = args.quick
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(RESULTS, indent=2, default=str))
    met = sum(1 for _, m, _ in TARGETS if m)
    say(
        f"\n{met} of {len(TARGETS)} targets met; results in {args.json};"
        f" {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
