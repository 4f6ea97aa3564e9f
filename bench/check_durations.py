"""What "runs too long" (migration 0010) costs check_job_status, at scale.

The workload of section 3 (300 job names, 100 of them configured, 30 days of runs, 2%
failing), in a schema of its own, checked by schema version 6's check_job_status (the one
before this change, installed beside the current one from its migration file) and by the
current one with: no duration settings; fixed limits on half of the configured jobs; fixed
limits on 60 and "slower than usual" on 20; both on all 100; "slower than usual" looking
back over 100 runs (the most allowed) on all 100. Each variant is set by an UPDATE of
job_check_config between timed blocks; the rounds rotate the order, so machine noise hits
every variant alike.

    bench_durations(dsn, quick, say, target) -> dict   (wired into bench/run.py by the lead)
    python -m bench.check_durations [--full]            (this section alone)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from jobmon_core import Jobmon

SCHEMA = "jobmon_bench_durations"
MIGRATIONS = Path(__file__).resolve().parent.parent / "jobmon_core" / "schema" / "migrations"
WINDOW = "2 hours"  # the longest threshold: what check_job_status() picks by itself
CONFIGURED = 100

GENERATE = """
INSERT INTO {job_log} (owner, job_name, start_time, end_time, status, pid)
SELECT 'etl', 'JOB ' || (g %% 300), now() - (g::float8 / %(n)s) * interval '30 days',
       now() - (g::float8 / %(n)s) * interval '30 days' + (20 + g %% 20) * interval '1 second',
       CASE WHEN g %% 50 = 0 THEN 'CRITICAL' ELSE 'OK' END, 1000 + g %% 5000
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
"""

# Each variant: the SET of an UPDATE of job_check_config, and which configured jobs get it.
BEFORE = "before #15 (version 6), no settings"
SOME = "fixed limits on 60, usual on 20"
VARIANTS: dict[str, tuple[str, str]] = {
    BEFORE: (
        "warn_duration = NULL, error_duration = NULL, duration_factor = NULL, duration_runs = 20",
        "true",
    ),
    "no duration settings": (
        "warn_duration = NULL, error_duration = NULL, duration_factor = NULL, duration_runs = 20",
        "true",
    ),
    "fixed limits on 50 jobs": (
        "warn_duration = '30 seconds', error_duration = '1 minute', duration_factor = NULL,"
        " duration_runs = 20",
        "right(job_name, 1) IN ('0', '2', '4', '6', '8')",
    ),
    SOME: (
        "warn_duration = '30 seconds', error_duration = '1 minute',"
        " duration_factor = CASE WHEN right(job_name, 1) IN ('0', '5') THEN 1.2 END,"
        " duration_runs = 20",
        "right(job_name, 1) IN ('0', '2', '4', '5', '6', '8')",
    ),
    "limits + usual (20 runs) on 100": (
        "warn_duration = '30 seconds', error_duration = '1 minute', duration_factor = 1.2,"
        " duration_runs = 20",
        "true",
    ),
    "usual over 100 runs on 100": (
        "warn_duration = NULL, error_duration = NULL, duration_factor = 1.2, duration_runs = 100",
        "true",
    ),
}


def _grow(conn: psycopg.Connection, have: int, want: int) -> None:
    query = sql.SQL(GENERATE).format(job_log=sql.Identifier(SCHEMA, "job_log"))
    for first in range(have + 1, want + 1, 1_000_000):
        conn.execute(query, {"n": want, "first": first, "last": min(want, first + 999_999)})
    # a few runs still open, some of them past every limit
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (owner, job_name, start_time, pid)"
            " SELECT 'etl', 'JOB ' || g, now() - g * interval '10 seconds', 0"
            " FROM generate_series(0, 99, 9) g"
        ).format(sql.Identifier(SCHEMA, "job_log"))
    )
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(SCHEMA, "job_log")))


def _configure(conn: psycopg.Connection, variant: str) -> None:
    settings, which = VARIANTS[variant]
    table = sql.Identifier(SCHEMA, "job_check_config")
    conn.execute(
        sql.SQL("UPDATE {} SET {}").format(table, sql.SQL(VARIANTS["no duration settings"][0]))
    )
    conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE {}").format(table, sql.SQL(settings), sql.SQL(which))
    )


def _install_version6(conn: psycopg.Connection) -> None:
    """check_job_status as schema version 6 shipped it (before migration 0010), beside the
    current one: the exact "before" of this change, on the same data, in the same rounds."""
    text = (MIGRATIONS / "0006_check_window_bound.sql").read_text()
    body = text[: text.index("COMMENT ON FUNCTION")].replace(
        "CREATE OR REPLACE FUNCTION check_job_status(", "CREATE FUNCTION check_job_status_v6("
    )
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL(body))  # our own shipped file


def _time_ms(call: Callable[[], object], calls: int) -> float:
    for _ in range(3):  # warm: caches, the plpgsql plan
        call()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1000


def bench_durations(
    dsn: str,
    quick: bool,
    say: Callable[[str], None],
    target: Callable[[str, bool, str], None],
) -> dict[str, Any]:
    """Median ms per check_job_status(window) call for each variant and log size, and the
    ratios to version 6's function (before this change) at the largest size."""
    say("\n8. runs too long: check_job_status() with duration limits (section 3's workload)")
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    rounds, calls = (12, 10) if quick else (12, 20)
    results: dict[str, Any] = {}
    conn = psycopg.connect(dsn, autocommit=True)
    jm = Jobmon(dsn, schema=SCHEMA)
    try:
        jm.install()
        _install_version6(conn)
        checks = {
            function: sql.SQL("SELECT * FROM {}(%s::interval)").format(
                sql.Identifier(SCHEMA, function)
            )
            for function in ("check_job_status", "check_job_status_v6")
        }

        def check(variant: str) -> int:
            function = "check_job_status_v6" if variant == BEFORE else "check_job_status"
            return len(conn.execute(checks[function], [WINDOW]).fetchall())

        conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_name, warn_threshold, error_threshold, active)"
                " SELECT 'JOB ' || g, '1 hour', '2 hours', true FROM generate_series(0, %s) g"
            ).format(sql.Identifier(SCHEMA, "job_check_config")),
            [CONFIGURED - 1],
        )
        have = 0
        rows = []
        for size in sizes:
            _grow(conn, have, size)
            have = size
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            names = list(VARIANTS)
            for r in range(rounds):
                for variant in names[r % len(names) :] + names[: r % len(names)]:
                    _configure(conn, variant)
                    times[variant].append(_time_ms(partial(check, variant), calls))
            medians = {v: statistics.median(t) for v, t in times.items()}
            alerts = {}
            for variant in names:
                _configure(conn, variant)
                alerts[variant] = check(variant)
            results[str(size)] = {"median_ms": medians, "alerts": alerts}
            rows.append((size, medians, alerts))
        width = max(len(v) for v in VARIANTS)
        say(f"   {'variant':<{width}}  " + "  ".join(f"{s:>10,} rows" for s, _, _ in rows))
        for variant in VARIANTS:
            cells = "  ".join(f"{m[variant]:>6.2f} ms ({a[variant]:>3})" for _, m, a in rows)
            say(f"   {variant:<{width}}  {cells}")
        say("   (median ms per check_job_status() call; in parentheses: rows it returned)")
        largest = results[str(sizes[-1])]["median_ms"]
        before = largest[BEFORE]
        unset = largest["no duration settings"]
        results["unset_ratio"] = unset / before
        target(
            f"no duration settings costs what version 6 cost at {sizes[-1]:,} rows",
            unset < 1.2 * before + 0.1,
            f"{before:.2f} -> {unset:.2f} ms, {unset / before:.2f}x",
        )
        some = largest[SOME]
        results["some_ratio"] = some / before
        target(
            f"check with limits on some jobs < 5 ms and < 2.5x version 6 at {sizes[-1]:,} rows",
            some < 5 and some < 2.5 * before,
            f"{before:.2f} -> {some:.2f} ms, {some / before:.2f}x",
        )
        smallest = results[str(sizes[0])]["median_ms"]["limits + usual (20 runs) on 100"]
        flat = largest["limits + usual (20 runs) on 100"]
        target(
            "check with duration limits on every job flat across sizes",
            flat < 2 * smallest + 1,
            f"{smallest:.2f} -> {flat:.2f} ms",
        )
    finally:
        jm.close()
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.close()
    return results


if __name__ == "__main__":  # python -m bench.check_durations [--full]: this section alone
    import sys

    from devtools import pg

    with pg.server("JOBMON_BENCH_DSN") as srv, pg.fresh_database(srv, "jobmon_bench_dur") as db:
        bench_durations(
            db,
            "--full" not in sys.argv,
            lambda text: print(text, flush=True),
            lambda name, met, detail: print(
                f"   target {name}: {'MET' if met else 'MISSED'} ({detail})"
            ),
        )
