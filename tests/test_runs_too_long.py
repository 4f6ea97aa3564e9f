"""Runs too long (issue #15, migration 0010): duration limits, "slower than usual", and the
proof that pg_jobmon 1.4's results are unchanged when they are not configured.

The differential tests compare, in one transaction (one "now"), the schema's
check_job_status with two pg_jobmon 1.4 checks installed beside it: schema version 6's (from
its migration file) and the 1.4-shaped extension fixture's (tests/fixtures/pg_jobmon_14). On
random workloads without duration settings all three agree row for row; with them, the new
function only adds RUNNING_TOO_LONG / RAN_TOO_LONG rows.
"""

from __future__ import annotations

import random
import re
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobmon_core import Alert, CheckConfig, InvalidArgumentError
from jobmon_core.cli import main as cli_main

MIGRATIONS = Path(__file__).resolve().parent.parent / "jobmon_core" / "schema" / "migrations"
NEW_STATUSES = {"RUNNING_TOO_LONG", "RAN_TOO_LONG"}
OK_ROW = Alert(1, "OK", None, "All jobs run successfully")
USUAL = "(percentile 0.5 of its last 20 runs, successful ones)"


RUN_INSERT = (
    "INSERT INTO job_log (owner, job_name, start_time, end_time, status, pid)"
    " VALUES (current_user, %(name)s, now() - %(ago)s::interval,"
    "         now() - %(ago)s::interval + %(took)s::interval, %(status)s, %(pid)s)"
)


def run(rows, name: str, ago: str, took: str | None = None, status: str | None = None, pid=0):
    """A hand-inserted run that started ``ago`` ago and took ``took`` (None: still open)."""
    rows.execute(RUN_INSERT, {"name": name, "ago": ago, "took": took, "status": status, "pid": pid})


def latest_times(admin, schema: str, name: str) -> tuple[str, str | None]:
    """The latest run's start and end as the check renders them (the session's DateStyle)."""
    return admin.execute(
        sql.SQL(
            "SELECT start_time::text, end_time::text FROM {} WHERE job_name = %s"
            " ORDER BY start_time DESC LIMIT 1"
        ).format(sql.Identifier(schema, "job_log")),
        [name],
    ).fetchone()


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# -- fixed limits -------------------------------------------------------------------------------


def test_a_finished_run_past_a_limit_alerts_until_a_later_run(jm, rows, admin):
    jm.configure_check(
        "nightly", warn=hours(25), error=hours(49), warn_duration=hours(1), error_duration=hours(2)
    )
    run(rows, "NIGHTLY", "5 hours", "1 hour", "OK")
    assert jm.check_job_status() == [OK_ROW]

    run(rows, "NIGHTLY", "3 hours", "90 minutes", "OK")
    _, ended = latest_times(admin, jm.schema, "NIGHTLY")
    assert jm.check_job_status() == [
        Alert(
            2,
            "RAN_TOO_LONG",
            "NIGHTLY",
            f"Last run took 01:30:00, longer than its warn_duration of 01:00:00. Ended: {ended}",
        )
    ]

    run(rows, "NIGHTLY", "150 minutes", "2 hours 0.5 seconds", "OK")
    _, ended = latest_times(admin, jm.schema, "NIGHTLY")
    assert jm.check_job_status() == [
        Alert(
            3,
            "RAN_TOO_LONG",
            "NIGHTLY",
            f"Last run took 02:00:00.5, longer than its error_duration of 02:00:00. Ended: {ended}",
        )
    ]

    run(rows, "NIGHTLY", "10 minutes")  # the next run has started and is within its limits
    assert jm.check_job_status() == [OK_ROW]
    run(rows, "NIGHTLY", "5 minutes", "1 minute", "OK")
    assert jm.check_job_status() == [OK_ROW]


def test_a_run_in_progress_past_a_limit_alerts_while_it_runs(jm, rows, admin):
    jm.configure_check("loader", warn=hours(24), error=hours(48), error_duration=hours(2))
    run(rows, "LOADER", "3 hours")
    started, _ = latest_times(admin, jm.schema, "LOADER")
    (alert,) = jm.check_job_status()
    assert (alert.alert_code, alert.alert_status, alert.job_name) == (
        3,
        "RUNNING_TOO_LONG",
        "LOADER",
    )
    assert re.fullmatch(
        r"Running for 03:0\d:\d\d, longer than its error_duration of 02:00:00\. Started: "
        + re.escape(started),
        alert.alert_text,
    ), alert.alert_text


def test_a_live_run_keeps_its_own_status_beside_upstreams_running(jm, work):
    """RUNNING relabels upstream's rows of a job with a live run; never the new ones."""
    jm.configure_check(
        "live",
        warn=timedelta(milliseconds=1),
        error=hours(1),
        warn_duration=timedelta(milliseconds=1),
    )
    jm.add_job("live", conn=work)
    time.sleep(0.01)
    statuses = [(a.alert_code, a.alert_status) for a in jm.check_job_status()]
    assert statuses == [(2, "RUNNING"), (2, "RUNNING_TOO_LONG")]


def test_the_latest_run_is_judged_even_before_the_window(jm, rows):
    """A run that started before the history window is still the job's latest run: it stays
    RUNNING_TOO_LONG (beside MISSING) instead of vanishing when it leaves the window."""
    jm.configure_check("stuck", warn=hours(1), error=hours(2), error_duration=hours(1))
    run(rows, "STUCK", "3 days")
    found = {a.alert_status: a.alert_code for a in jm.check_job_status()}
    assert found == {"MISSING": 3, "RUNNING_TOO_LONG": 3}


def test_inactive_or_unconfigured_jobs_never_alert_on_duration(jm, rows):
    jm.configure_check(
        "muted", warn=hours(24), error=hours(48), error_duration=hours(1), active=False
    )
    run(rows, "MUTED", "5 hours")
    run(rows, "UNCONFIGURED", "5 hours")
    assert jm.check_job_status() == [OK_ROW]


def test_the_new_rows_join_the_order_and_the_summary(jm, rows):
    jm.configure_check("b job", warn=hours(1), error=hours(2), warn_duration=hours(1))
    jm.configure_check("a job", warn=hours(1), error=hours(2))
    run(rows, "B JOB", "150 minutes", "2 hours", "OK")
    run(rows, "A JOB", "150 minutes", "1 minute", "OK")
    assert [(a.alert_code, a.job_name, a.alert_status) for a in jm.check_job_status()] == [
        (3, "A JOB", "MISSING"),
        (3, "B JOB", "MISSING"),
        (2, "B JOB", "RAN_TOO_LONG"),
    ]
    summary = jm.check_summary()
    assert summary.alert_code == 3
    assert "B JOB: Last run took 02:00:00, longer than its warn_duration" in summary.alert_text


# -- slower than usual ----------------------------------------------------------------------------


def usual_runs(rows, name: str, minutes: list[int], status: str = "OK") -> None:
    """Finished runs, oldest first, an hour apart and ending before the last hour."""
    for i, took in enumerate(minutes):
        run(rows, name, f"{(len(minutes) - i) * 60 + 120} minutes", f"{took} minutes", status)


def test_slower_than_usual_compares_with_the_median_of_recent_successful_runs(jm, rows, admin):
    jm.configure_check("etl", warn=hours(24), error=hours(48), duration_factor=2)
    usual_runs(rows, "ETL", [10, 11, 9, 10, 12])
    run(rows, "ETL", "100 minutes", "19 minutes", "OK")
    assert jm.check_job_status() == [OK_ROW]  # under 2 x 10 min

    run(rows, "ETL", "80 minutes", "22 minutes", "OK")
    _, ended = latest_times(admin, jm.schema, "ETL")
    assert jm.check_job_status() == [
        Alert(
            2,
            "RAN_TOO_LONG",
            "ETL",
            f"Last run took 00:22:00, slower than usual: more than 2 x 00:10:30 {USUAL}."
            f" Ended: {ended}",
        )
    ], "the median of 10, 11, 9, 10, 12 and the 19-minute run is 10.5 minutes"

    run(rows, "ETL", "30 minutes")  # running: judged against the runs before it
    (alert,) = jm.check_job_status()
    assert alert.alert_status == "RUNNING_TOO_LONG"
    assert alert.alert_text.startswith("Running for 00:3")
    assert "slower than usual: more than 2 x 00:11:00" in alert.alert_text  # 22 min counts


def test_slower_than_usual_needs_five_successful_runs_among_the_last_n(jm, rows):
    jm.configure_check(
        "young", warn=hours(24), error=hours(48), duration_factor=1.5, duration_runs=6
    )
    usual_runs(rows, "YOUNG", [10, 10, 10, 10])
    run(rows, "YOUNG", "100 minutes", "60 minutes", "OK")
    assert jm.check_job_status() == [OK_ROW]  # four runs before it: not enough to judge

    jm.configure_check("failing", warn=hours(24), error=hours(48), duration_factor=1.5)
    usual_runs(rows, "FAILING", [10, 10, 10, 10])
    usual_runs(rows, "FAILING", [1, 1, 1], status="CRITICAL")  # failures are not "usual"
    run(rows, "FAILING", "100 minutes", "60 minutes", "OK")
    assert jm.check_job_status() == [OK_ROW]

    usual_runs(rows, "YOUNG", [10])  # the fifth successful run before the latest one
    jm.configure_check(
        "young", warn=hours(24), error=hours(48), duration_factor=1.5, duration_runs=5
    )
    run(rows, "YOUNG", "90 minutes", "60 minutes", "OK")
    assert [a.alert_status for a in jm.check_job_status()] == ["RAN_TOO_LONG"]


def test_only_the_last_n_runs_count(jm, rows):
    """duration_runs bounds the look-back (an index range of N entries, whatever happened
    before): old slow runs are forgotten."""
    jm.configure_check("drift", warn=hours(24), error=hours(48), duration_factor=2, duration_runs=5)
    usual_runs(rows, "DRIFT", [100, 100, 100, 100, 100, 10, 10, 10, 10, 10])
    run(rows, "DRIFT", "100 minutes", "30 minutes", "OK")
    assert [a.alert_status for a in jm.check_job_status()] == ["RAN_TOO_LONG"]


def test_the_percentile_is_configurable_and_fixed_limits_win(jm, rows):
    jm.configure_check(
        "spread",
        warn=hours(24),
        error=hours(48),
        duration_factor=1,
        duration_percentile=0.9,
        warn_duration=timedelta(minutes=50),
        error_duration=timedelta(minutes=55),
    )
    usual_runs(rows, "SPREAD", [10, 20, 30, 40, 50])
    run(rows, "SPREAD", "100 minutes", "47 minutes", "OK")  # p90 = 46 min
    (alert,) = jm.check_job_status()
    assert alert.alert_code == 2
    assert "slower than usual: more than 1 x 00:46:00 (percentile 0.9 of" in alert.alert_text
    run(rows, "SPREAD", "80 minutes", "51 minutes", "OK")
    (alert,) = jm.check_job_status()
    assert (alert.alert_code, "warn_duration" in alert.alert_text) == (2, True)
    run(rows, "SPREAD", "70 minutes", "56 minutes", "OK")
    (alert,) = jm.check_job_status()
    assert (alert.alert_code, "error_duration" in alert.alert_text) == (3, True)


# -- configuration ------------------------------------------------------------------------------


def test_configure_check_stores_reads_back_and_replaces_the_limits(jm):
    saved = jm.configure_check(
        "job",
        warn=hours(1),
        error=hours(2),
        warn_duration=timedelta(minutes=30),
        error_duration=hours(1),
        duration_factor=2.5,
        duration_percentile=0.9,
        duration_runs=50,
    )
    assert saved == CheckConfig(
        "JOB", hours(1), hours(2), True, 0, None, timedelta(minutes=30), hours(1), 2.5, 0.9, 50
    )
    assert jm.list_checks() == [saved]
    # create or replace: limits left out are off again
    plain = jm.configure_check("job", warn=hours(1), error=hours(2))
    assert plain == CheckConfig("JOB", hours(1), hours(2), True, 0, None)
    assert (plain.duration_percentile, plain.duration_runs) == (0.5, 20)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warn_duration": timedelta(0)}, "warn_duration must be longer than zero"),
        ({"error_duration": timedelta(-1)}, "error_duration must not be negative"),
        ({"warn_duration": "1h"}, r"warn_duration must be a datetime\.timedelta"),
        (
            {"warn_duration": hours(2), "error_duration": hours(1)},
            "error_duration .* must not be shorter than warn_duration",
        ),
        ({"duration_factor": 0.5}, "duration_factor must be 1..1000"),
        ({"duration_factor": float("nan")}, "duration_factor must be a finite number"),
        ({"duration_factor": True}, "duration_factor must be a number"),
        ({"duration_factor": 10**400}, "duration_factor is too large a number"),
        ({"duration_factor": "2"}, "duration_factor must be a number"),
        ({"duration_percentile": 0.9}, "need duration_factor"),
        ({"duration_runs": 10}, "need duration_factor"),
        ({"duration_factor": 2, "duration_percentile": 0}, "above 0 and at most 1"),
        ({"duration_factor": 2, "duration_percentile": 95}, "above 0 and at most 1"),
        ({"duration_factor": 2, "duration_runs": 4}, r"duration_runs must be 5\.\.100,"),
        ({"duration_factor": 2, "duration_runs": 101}, r"duration_runs must be 5\.\.100,"),
        ({"duration_factor": 2, "duration_runs": 2.0}, "duration_runs must be an int"),
    ],
)
def test_configure_check_refuses_bad_limits(jm, kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        jm.configure_check("job", warn=hours(1), error=hours(2), **kwargs)
    assert jm.list_checks() == []


ODD_VALUES: list[object] = [
    None, True, 0, 1, 4, 5, 100, 101, -1, 0.0, 0.5, 1.0, 2.5, 1000.0, 1000.5, 95.0,
    float("nan"), float("inf"), 10**400, "2", "1h", timedelta(0), timedelta(-1),
    timedelta(seconds=1), hours(1), hours(3), timedelta(days=365_250), timedelta(days=365_251),
    timedelta.max,
]  # fmt: skip
LIMIT_NAMES = ("warn_duration", "error_duration", "duration_factor", "duration_percentile",
               "duration_runs")  # fmt: skip


def test_any_limits_are_stored_exactly_or_refused_with_nothing_written(jm):
    """Odd values in every combination (seeded): stored and read back as given, or refused
    with an error naming the argument, and nothing written; a stored limit never breaks the
    check."""
    rng = random.Random(15)
    outcomes = set()
    for _ in range(150):
        limits = {n: rng.choice(ODD_VALUES) if rng.random() < 0.4 else None for n in LIMIT_NAMES}
        before = jm.list_checks()
        try:
            saved = jm.configure_check("odd", warn=hours(1), error=hours(2), **limits)
        except InvalidArgumentError as exc:
            message = str(exc)
            assert any(name in message for name in LIMIT_NAMES), message
            assert jm.list_checks() == before
            outcomes.add("refused")
            continue
        assert jm.list_checks() == [saved]
        for name, value in limits.items():
            assert value is None or getattr(saved, name) == value
        assert all(isinstance(a, Alert) for a in jm.check_job_status())
        outcomes.add("stored")
    assert outcomes == {"refused", "stored"}


def test_sql_users_configure_with_plain_inserts_and_updates(jm, rows):
    """pg_jobmon 1.4's INSERT (no column list) still works; the limits are columns to set,
    and the table refuses what the API refuses."""
    rows.execute(
        "INSERT INTO job_check_config VALUES ('SQL JOB', '1 day', '2 days', true, 0, NULL)"
    )
    rows.execute(
        "UPDATE job_check_config SET warn_duration = '1 hour', duration_factor = 3"
        " WHERE job_name = 'SQL JOB'"
    )
    (config,) = jm.list_checks()
    assert (config.warn_duration, config.duration_factor, config.duration_runs) == (
        hours(1),
        3.0,
        20,
    )
    run(rows, "SQL JOB", "3 hours", "2 hours", "OK")
    assert [a.alert_status for a in jm.check_job_status()] == ["RAN_TOO_LONG"]
    for bad in (
        "error_duration = '30 minutes'",  # shorter than warn_duration
        "warn_duration = '0 seconds'",
        "duration_factor = 0.5",
        "duration_percentile = 0",
        "duration_runs = 1",
        "duration_runs = 101",
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            rows.execute(f"UPDATE job_check_config SET {bad}")


def test_sql_users_can_ask_for_the_duration_alerts_alone(jm, rows, admin):
    """check_job_durations() returns just the new rows (none without settings)."""
    function = sql.SQL("SELECT * FROM {}()").format(
        sql.Identifier(jm.schema, "check_job_durations")
    )
    jm.configure_check("alone", warn=hours(1), error=hours(2))
    run(rows, "ALONE", "3 hours", "2 hours", "OK")
    assert admin.execute(function).fetchall() == []
    jm.configure_check("alone", warn=hours(1), error=hours(2), error_duration=hours(1))
    ((code, status, name, text),) = admin.execute(function).fetchall()
    assert (code, status, name) == (3, "RAN_TOO_LONG", "ALONE")
    assert text.startswith("Last run took 02:00:00, longer than its error_duration of 01:00:00.")
    assert [a.alert_status for a in jm.check_job_status()] == ["MISSING", "RAN_TOO_LONG"]


def test_duration_alerts_work_read_only_as_the_monitor_role(jm, rows, dsn, admin):
    """Like the 1.4 rules: a READ ONLY transaction, as the least-privilege monitor role."""
    jm.configure_check(
        "watched", warn=hours(24), error=hours(48), error_duration=hours(1), duration_factor=2
    )
    usual_runs(rows, "WATCHED", [10, 10, 10, 10, 10])
    run(rows, "WATCHED", "100 minutes", "61 minutes", "OK")
    role = f"{jm.schema}_durations_monitor"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'monitor-pw'").format(sql.Identifier(role))
    )
    try:
        for statement in jm.grant_statements(writer=None, monitor=role, admin=None):
            admin.execute(statement)
        params = conninfo_to_dict(dsn)
        params.update(user=role, password="monitor-pw")
        with psycopg.connect(make_conninfo("", **params)) as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            found = conn.execute(
                sql.SQL("SELECT alert_code, alert_status FROM {}()").format(
                    sql.Identifier(jm.schema, "check_job_status")
                )
            ).fetchall()
        assert found == [(3, "RAN_TOO_LONG")]
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {r}").format(r=sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {r}").format(r=sql.Identifier(role)))


def test_the_cli_sets_and_lists_the_limits(dsn, jm, capsys):
    def cli(*args: str) -> tuple[int, str, str]:
        code = cli_main(["--dsn", dsn, "--schema", jm.schema, *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("config", "set", "load", "--warn", "1d", "--error", "2d",
                       "--warn-duration", "2h", "--error-duration", "4h",
                       "--duration-factor", "2", "--duration-runs", "30")  # fmt: skip
    assert code == 0
    limits = "warn over 2 h, error over 4 h, warn over 2 x percentile 0.5 of last 30 runs"
    assert (
        out.strip() == f"monitoring LOAD: warn after 1 d, error after 2 d; runs too long: {limits}"
    )
    code, out, _ = cli("config", "list")
    assert out.splitlines()[0].split()[-3:] == ["runs", "too", "long"]
    assert out.splitlines()[2].endswith(limits)
    config = jm.list_checks()[0]
    assert (config.warn_duration, config.error_duration, config.duration_runs) == (
        hours(2),
        hours(4),
        30,
    )
    code, _, err = cli("config", "set", "load", "--warn", "1d", "--error", "2d",
                       "--duration-percentile", "0.9")  # fmt: skip
    assert code != 0
    assert "need duration_factor" in err
    code, _, err = cli("config", "set", "load", "--warn", "1d", "--error", "2d",
                       "--warn-duration", "soon")  # fmt: skip
    assert code != 0
    assert "--warn-duration" in err
    assert jm.list_checks() == [config]  # nothing changed by the refused calls


# -- the differential: pg_jobmon 1.4's results are unchanged --------------------------------------


FIXTURE_14 = MIGRATIONS.parent.parent.parent / "tests" / "fixtures" / "pg_jobmon_14"


@pytest.fixture
def references(rows, admin) -> tuple[str, str]:
    """Two pg_jobmon 1.4 checks installed beside the current one: schema version 6's (what
    this project shipped before 0010) and the 1.4-shaped extension fixture's (an independent
    rewrite of the original's rules, window scans and all, for tests/test_adopt.py)."""
    text = (MIGRATIONS / "0006_check_window_bound.sql").read_text()
    rows.execute(
        text[: text.index("COMMENT ON FUNCTION")].replace(
            "CREATE OR REPLACE FUNCTION check_job_status(", "CREATE FUNCTION check_job_status_v6("
        )
    )
    text = (FIXTURE_14 / "pg_jobmon--1.4.1.sql").read_text()
    start = text.index("CREATE FUNCTION check_job_status(p_history interval")
    original = text[start : text.index("$$;", start) + 3]
    rows.execute(
        original.replace("@extschema@", sql.Identifier(rows.schema).as_string(admin)).replace(
            "CREATE FUNCTION check_job_status(", "CREATE FUNCTION check_job_status_original("
        )
    )
    return "check_job_status_v6", "check_job_status_original"


WORKLOADS = 60
THRESHOLDS = ["00:00:00.001", "1 minute", "1 hour", "1 day"]
DURATIONS = [None, "00:00:00.001", "10 minutes", "1 hour", "5 hours"]


def random_workload(rows, rng: random.Random, live_pid: int, *, limits: bool) -> None:
    """Replace the log and the configuration with random ones (in one transaction)."""
    names = [f"J{i}" for i in range(6)]
    calm = rng.random() < 0.25  # nothing configured, no failures: only limits may alert
    configs = []
    for name in [] if calm else rng.sample(names, rng.randint(0, len(names))):
        warn = rng.randrange(len(THRESHOLDS))
        error = rng.randrange(warn, len(THRESHOLDS))
        durations: list[object] = [None, None, None, 0.5, 20]
        if limits:
            low, high = sorted(rng.randrange(len(DURATIONS)) for _ in range(2))
            durations = [DURATIONS[low], DURATIONS[high], rng.choice([None, 1.0, 2.0]),
                         rng.choice([0.5, 0.9, 1.0]), rng.choice([5, 20])]  # fmt: skip
        configs.append([name, THRESHOLDS[warn], THRESHOLDS[error], rng.random() < 0.8,
                        rng.randint(0, 2), *durations])  # fmt: skip
    runs, failures = [], []
    for name in names:
        for _ in range(rng.randint(0, 9)):
            ago = rng.choice(["0 seconds", *(f"{rng.randint(1, 4000)} minutes" for _ in "ab")])
            took = rng.choice([None, "1 second", f"{rng.randint(1, 300)} minutes"])
            status = None if took is None else rng.choice(["OK", "OK", "WARNING", "CRITICAL"])
            pid = live_pid if took is None and ago == "0 seconds" else rng.choice([0, 1])
            runs.append({"name": name, "ago": ago, "took": took, "status": status, "pid": pid})
        for code in (2, 3):
            failures += [[name, code]] * (0 if calm else rng.choice([0, 0, 1, 3]))
    conn = rows.conn
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(rows.schema)))
        cur.execute("DELETE FROM job_detail; DELETE FROM job_log; DELETE FROM job_check_log;"
                    " DELETE FROM job_check_config")  # fmt: skip
        cur.executemany(
            "INSERT INTO job_check_config (job_name, warn_threshold, error_threshold, active,"
            " sensitivity, escalate, warn_duration, error_duration, duration_factor,"
            " duration_percentile, duration_runs)"
            " VALUES (%s, %s, %s, %s, %s, NULL, %s, %s, %s, %s, %s)",
            configs,
        )
        cur.executemany(RUN_INSERT, runs)
        cur.executemany(
            "INSERT INTO job_check_log (job_id, job_name, alert_code) VALUES (0, %s, %s)",
            failures,
        )


def checks_at_once(admin, schema: str, functions: tuple[str, ...], history: str) -> list:
    """Each check function's rows, all in one transaction: the same "now"."""
    results = []
    with admin.transaction():
        for function in functions:
            query = sql.SQL("SELECT * FROM {}(%s::interval)").format(
                sql.Identifier(schema, function)
            )
            results.append([Alert(*r) for r in admin.execute(query, [history]).fetchall()])
    return results


def test_without_limits_every_result_is_pg_jobmon_14s(jm, rows, admin, work, references):
    rng = random.Random(6)
    seen: set[str | None] = set()
    for _ in range(WORKLOADS):
        random_workload(rows, rng, work.info.backend_pid, limits=False)
        time.sleep(0.002)  # open runs of the live session older than a 1 ms threshold
        for history in ("2 days", "30 days"):
            new, *old = checks_at_once(admin, jm.schema, ("check_job_status", *references), history)
            assert old == [new, new]
            seen.update(a.alert_status for a in new)
    assert seen == {"OK", "FAILED_RUN", "MISSING", "RUNNING"}  # the workloads reach each rule


def test_with_limits_only_the_new_rows_are_added(jm, rows, admin, work, references):
    rng = random.Random(10)
    added: set[tuple[int, str | None]] = set()
    for _ in range(WORKLOADS):
        random_workload(rows, rng, work.info.backend_pid, limits=True)
        time.sleep(0.002)
        for history in ("2 days", "30 days"):
            new, *olds = checks_at_once(
                admin, jm.schema, ("check_job_status", *references), history
            )
            kept = [a for a in new if a.alert_status not in NEW_STATUSES]
            for old in olds:
                assert kept == (old if old != [OK_ROW] else [OK_ROW] if kept == new else [])
            assert all(a.alert_code in (2, 3) for a in new if a.alert_status in NEW_STATUSES)
            added.update((a.alert_code, a.alert_status) for a in new if a not in kept)
    assert added == {(c, s) for c in (2, 3) for s in NEW_STATUSES}


def test_sql_users_configure_the_limits_with_the_same_function_python_calls(jm, rows, admin):
    """configure_check() in SQL (version 11) takes the duration limits; Jobmon.configure_check
    calls it too, so both give the same row and the same alerts."""
    rows.execute(
        "SELECT configure_check('sql loader', '24 hours', '48 hours',"
        " p_error_duration => '2 hours', p_duration_factor => 2, p_duration_runs => 10)"
    )
    by_sql = [c for c in jm.list_checks() if c.job_name == "SQL LOADER"]
    jm.configure_check(
        "python loader",
        warn=hours(24),
        error=hours(48),
        error_duration=hours(2),
        duration_factor=2,
        duration_runs=10,
    )
    by_python = [c for c in jm.list_checks() if c.job_name == "PYTHON LOADER"]
    assert [vars(c) | {"job_name": ""} for c in by_sql] == [
        vars(c) | {"job_name": ""} for c in by_python
    ]
    run(rows, "SQL LOADER", "3 hours")
    alerts = [a for a in jm.check_job_status() if a.job_name == "SQL LOADER"]
    assert [(a.alert_code, a.alert_status) for a in alerts] == [(3, "RUNNING_TOO_LONG")]
    with pytest.raises(psycopg.Error) as caught:
        rows.execute("SELECT configure_check('x', '1 hour', '2 hours', p_duration_runs => 5)")
    assert caught.value.sqlstate == "22023"
    assert "need p_duration_factor" in str(caught.value)
