"""check_job_status: every pg_jobmon 1.4 rule, the summary form, and configure_check."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobmon_core import Alert, CheckHistoryError, InvalidArgumentError, Jobmon

OK_ROW = Alert(1, "OK", None, "All jobs run successfully")
NOT_COMPLETED = "Has not completed a run since highest configured monitoring time period"


def config(rows, name, warn="1 day", error="2 days", *, active=True, sensitivity=0, escalate=None):
    rows.execute(
        "INSERT INTO job_check_config (job_name, warn_threshold, error_threshold, active,"
        " sensitivity, escalate) VALUES (%s, %s::interval, %s::interval, %s, %s, %s)",
        [name, warn, error, active, sensitivity, escalate],
    )


def run(rows, name, started: str, ended: str | None = None, status: str | None = None, pid=0):
    """A hand-inserted job_log row (an INSERT fires no trigger); returns its end_time text."""
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, end_time, status, pid)"
        " VALUES (current_user, %s, now() - %s::interval, now() - %s::interval, %s, %s)",
        [name, started, ended, status, pid],
    )


def failures(rows, name, count: int, code: int = 3) -> None:
    """Failures since the last success, as the job_log trigger records them."""
    for _ in range(count):
        rows.execute(
            "INSERT INTO job_check_log (job_id, job_name, alert_code) VALUES (0, %s, %s)",
            [name, code],
        )


def last_end_text(admin, schema, name) -> str:
    (text,) = admin.execute(
        sql.SQL("SELECT max(end_time)::text FROM {} WHERE job_name = %s").format(
            sql.Identifier(schema, "job_log")
        ),
        [name],
    ).fetchone()
    return text


def test_a_healthy_log_gives_the_single_ok_row(jm, rows):
    assert jm.check_job_status() == [OK_ROW]
    config(rows, "GOOD JOB", "1 hour", "2 hours")
    run(rows, "GOOD JOB", "10 minutes", "9 minutes", "OK")
    assert jm.check_job_status() == [OK_ROW]
    assert jm.check_summary() == Alert(1, None, None, "(All jobs run successfully)")


def test_configured_jobs_never_run_are_missing_in_name_order(jm, rows):
    """Upstream's test01: five configured jobs, none run inside the window."""
    for name, warn, error in [
        ("PG_JOBMON TEST NEVER RUN", "1 day", "2 days"),
        ("PG_JOBMON TEST GOOD JOB", "30 seconds", "1 minute"),
        ("PG_JOBMON TEST BAD JOB", "1 day", "2 days"),
        ("PG_JOBMON TEST WARNING JOB", "1 day", "2 days"),
    ]:
        config(rows, name, warn, error)
    config(rows, "PG_JOBMON TEST NEVER FINISHED", "1 minute", "10 minutes", sensitivity=1)
    run(rows, "PG_JOBMON TEST NEVER FINISHED", "5 days", pid=1234)
    assert jm.check_job_status() == [
        Alert(3, "MISSING", name, NOT_COMPLETED)
        for name in sorted(
            [
                "PG_JOBMON TEST BAD JOB",
                "PG_JOBMON TEST GOOD JOB",
                "PG_JOBMON TEST NEVER FINISHED",
                "PG_JOBMON TEST NEVER RUN",
                "PG_JOBMON TEST WARNING JOB",
            ]
        )
    ]


def test_missing_is_measured_from_the_latest_start(jm, rows, admin):
    config(rows, "LATE JOB", "1 hour", "3 hours")
    run(rows, "LATE JOB", "2 hours", "110 minutes", "OK")
    config(rows, "VERY LATE JOB", "1 hour", "2 hours")
    run(rows, "VERY LATE JOB", "5 hours", "4 hours", "OK")
    run(rows, "VERY LATE JOB", "25 hours", "24 hours", "OK")
    # a run that takes longer than warn is MISSING although it is still going (as upstream)
    config(rows, "SLOW JOB", "1 hour", "3 hours")
    run(rows, "SLOW JOB", "90 minutes", None, None)
    late = last_end_text(admin, jm.schema, "LATE JOB")
    very_late = last_end_text(admin, jm.schema, "VERY LATE JOB")
    assert jm.check_job_status(timedelta(days=2)) == [
        Alert(3, "MISSING", "VERY LATE JOB", f"Last completed run: {very_late}"),
        Alert(2, "MISSING", "LATE JOB", f"Last completed run: {late}"),
        Alert(2, "MISSING", "SLOW JOB", NOT_COMPLETED),
    ]


def test_the_newest_end_is_of_any_run_in_the_window(jm, rows, admin):
    config(rows, "OVERLAP", "1 hour", "3 hours")
    run(rows, "OVERLAP", "5 hours", "10 minutes", "OK")  # started first, ended last
    run(rows, "OVERLAP", "2 hours", "100 minutes", "OK")
    newest_end = last_end_text(admin, jm.schema, "OVERLAP")
    assert jm.check_job_status(timedelta(days=1)) == [
        Alert(2, "MISSING", "OVERLAP", f"Last completed run: {newest_end}")
    ]
    # the default window (the longest threshold, 3 hours) leaves the 5-hour-old run out
    (alert,) = jm.check_job_status()
    assert alert.alert_text != f"Last completed run: {newest_end}"


def test_three_strikes_for_unconfigured_jobs_per_level(jm, rows):
    failures(rows, "NON-CONFIG BAD JOB", 3)
    failures(rows, "FOUR TIMES", 4)
    failures(rows, "TWICE", 2)
    failures(rows, "MIXED", 2, code=2)
    failures(rows, "MIXED", 1, code=3)
    failures(rows, "WARNED", 3, code=2)
    config(rows, "MUTED", active=False)
    run(rows, "MUTED", "1 hour", "1 hour", "CRITICAL")
    failures(rows, "MUTED", 5)  # inactive: no alert, and no three strikes either
    assert jm.check_job_status() == [
        Alert(3, "FAILED_RUN", "FOUR TIMES", "3 consecutive CRITICAL runs"),
        Alert(3, "FAILED_RUN", "NON-CONFIG BAD JOB", "3 consecutive CRITICAL runs"),
        Alert(2, "FAILED_RUN", "WARNED", "3 consecutive WARNING runs"),
    ]


@pytest.mark.parametrize(("sensitivity", "alerting_after"), [(0, 1), (1, 2), (2, 3)])
def test_sensitivity_for_configured_jobs(jm, rows, sensitivity, alerting_after):
    config(rows, "SENSITIVE", sensitivity=sensitivity)
    run(rows, "SENSITIVE", "1 minute", "1 minute", "CRITICAL")
    for count in range(1, 4):
        failures(rows, "SENSITIVE", 1)
        expected = (
            [Alert(3, "FAILED_RUN", "SENSITIVE", f"{count} CRITICAL run(s)")]
            if count >= alerting_after
            else [OK_ROW]
        )
        assert jm.check_job_status() == expected


def test_one_row_per_level_after_an_escalation(jm, rows):
    config(rows, "ESCALATED JOB")
    run(rows, "ESCALATED JOB", "1 minute", "1 minute", "WARNING")
    failures(rows, "ESCALATED JOB", 1, code=2)
    failures(rows, "ESCALATED JOB", 2, code=3)
    assert jm.check_job_status() == [
        Alert(3, "FAILED_RUN", "ESCALATED JOB", "2 CRITICAL run(s)"),
        Alert(2, "FAILED_RUN", "ESCALATED JOB", "1 WARNING run(s)"),
    ]


def test_custom_codes_flow_through_and_unknown_codes_vanish(jm, rows):
    rows.execute("INSERT INTO job_status_text VALUES (4, 'PAGE'), (5, 'WAKE EVERYONE')")
    failures(rows, "PAGER", 3, code=4)
    config(rows, "WAKER")
    run(rows, "WAKER", "1 minute", "1 minute", "WAKE EVERYONE")
    failures(rows, "WAKER", 1, code=5)
    failures(rows, "GAP", 3, code=9)  # no text for 9: dropped by the join, as upstream
    alerts = jm.check_job_status()
    assert alerts == [
        Alert(5, "FAILED_RUN", "WAKER", "1 WAKE EVERYONE run(s)"),
        Alert(4, "FAILED_RUN", "PAGER", "3 consecutive PAGE runs"),
    ]
    assert jm.check_summary() == Alert(
        5, None, None, "(WAKER: 1 WAKE EVERYONE run(s); PAGER: 3 consecutive PAGE runs)"
    )
    assert alerts[0].nagios_exit_code == 2


def test_order_is_code_desc_then_name_then_status(jm, rows):
    failures(rows, "B JOB", 3, code=2)
    failures(rows, "A JOB", 3, code=2)
    config(rows, "C JOB")
    run(rows, "C JOB", "1 minute", "1 minute", "CRITICAL")
    failures(rows, "C JOB", 1)
    config(rows, "A MISSING")
    codes = [(a.alert_code, a.job_name, a.alert_status) for a in jm.check_job_status()]
    assert codes == [
        (3, "A MISSING", "MISSING"),
        (3, "C JOB", "FAILED_RUN"),
        (2, "A JOB", "FAILED_RUN"),
        (2, "B JOB", "FAILED_RUN"),
    ]


def test_running_relabels_with_a_live_pid(jm, rows, work, admin):
    jm.configure_check("live job", warn=timedelta(milliseconds=1), error=timedelta(hours=1))
    first = jm.add_job("live job", conn=work)
    jm.close_job(first)
    jm.add_job("live job", conn=work)
    time.sleep(0.01)
    last = last_end_text(admin, jm.schema, "LIVE JOB")
    assert jm.check_job_status() == [
        Alert(2, "RUNNING", "LIVE JOB", f"Currently running. Last completed run: {last}")
    ]


def test_running_without_a_completed_run(jm, rows, work):
    jm.configure_check("first run", warn=timedelta(milliseconds=1), error=timedelta(hours=1))
    jm.add_job("first run", conn=work)
    time.sleep(0.01)
    assert jm.check_job_status() == [
        Alert(
            2,
            "RUNNING",
            "FIRST RUN",
            "Currently running. Job has not had a completed run within configured monitoring"
            " time period.",
        )
    ]


def test_running_needs_the_backend_that_started_the_run(jm, rows, work):
    """A pid reused by a later session, or a dead one, is not a running job."""
    config(rows, "REUSED", "1 minute", "1 hour")
    config(rows, "DEAD", "1 minute", "1 hour")
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, pid)"
        " VALUES (current_user, 'REUSED', now() - interval '1 day' + interval '1 hour', %s),"
        " (current_user, 'DEAD', now() - interval '2 hours', 2147483000)",
        [work.info.backend_pid],
    )
    statuses = {a.job_name: a.alert_status for a in jm.check_job_status()}
    assert statuses == {"REUSED": "MISSING", "DEAD": "MISSING"}


def test_blocked_relabels_a_job_waiting_for_a_lock(jm, rows, work, dsn):
    work.execute("CREATE TABLE IF NOT EXISTS public.blocker_target (x int)")
    work.commit()
    failures(rows, "WAITING JOB", 3)  # unconfigured: BLOCKED needs no config
    jm.add_job("waiting job", conn=work)
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE public.blocker_target IN ACCESS EXCLUSIVE MODE")
        waiter = threading.Thread(
            target=lambda: work.execute("SELECT * FROM public.blocker_target")
        )
        waiter.start()
        try:
            for _ in range(100):
                alerts = jm.check_job_status()
                if alerts[0].alert_status == "BLOCKED":
                    break
                time.sleep(0.05)
            assert alerts == [
                Alert(
                    3,
                    "BLOCKED",
                    "WAITING JOB",
                    "Another transaction has a lock that blocking this job from completing",
                )
            ]
        finally:
            holder.rollback()
            waiter.join(10)
    work.rollback()
    work.execute("DROP TABLE public.blocker_target")
    work.commit()


def test_a_history_shorter_than_the_longest_threshold_is_refused(jm, rows, admin):
    jm.configure_check("weekly", warn=timedelta(days=7), error=timedelta(days=8))
    with pytest.raises(CheckHistoryError, match="longest threshold") as caught:
        jm.check_job_status(timedelta(days=3))
    assert "8 days" in str(caught.value)
    with pytest.raises(CheckHistoryError):
        jm.check_summary(timedelta(days=3))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="Input argument must be"):
        admin.execute(
            sql.SQL("SELECT * FROM {}('3 days')").format(
                sql.Identifier(jm.schema, "check_job_status")
            )
        )
    # an inactive config does not count toward the guard
    jm.configure_check("weekly", warn=timedelta(days=7), error=timedelta(days=8), active=False)
    assert jm.check_job_status(timedelta(days=3)) == [OK_ROW]


def test_the_default_window_is_the_longest_active_threshold(jm, rows):
    config(rows, "TEN DAYS", "9 days", "10 days")
    run(rows, "TEN DAYS", "9 days 12 hours", "9 days 11 hours", "OK")  # inside 10 days
    (alert,) = jm.check_job_status()
    assert (alert.alert_code, alert.alert_status) == (2, "MISSING")
    assert alert.alert_text.startswith("Last completed run: ")


def test_timestamps_use_the_sessions_datestyle_and_time_zone(jm, rows, admin):
    config(rows, "STYLED", "1 hour", "3 hours")
    run(rows, "STYLED", "2 hours", "2 hours", "OK")
    admin.execute("SET DateStyle = 'SQL, DMY'")
    admin.execute("SET TimeZone = 'America/New_York'")
    (expected,) = admin.execute(
        sql.SQL("SELECT 'Last completed run: ' || max(end_time) FROM {}").format(
            sql.Identifier(jm.schema, "job_log")
        )
    ).fetchone()
    (text,) = admin.execute(
        sql.SQL("SELECT alert_text FROM {}()").format(sql.Identifier(jm.schema, "check_job_status"))
    ).fetchone()
    assert text == expected
    assert "EST" in text or "EDT" in text
    assert "/" in text


def test_the_seed_query_and_the_summary_in_sql(jm, rows, admin):
    seed_query = sql.SQL(
        "SELECT r.error_text || c.alert_text AS alert_status FROM {}('3 days') c"
        " JOIN {} r ON c.alert_code = r.error_code"
    )
    summary = seed_query.format(
        sql.Identifier(jm.schema, "check_job_summary"),
        sql.Identifier(jm.schema, "job_alert_nagios"),
    )
    assert admin.execute(summary).fetchall() == [("OK(All jobs run successfully)",)]
    # the seed's query as written still runs, on 1.4's per-problem rows
    per_problem = seed_query.format(
        sql.Identifier(jm.schema, "check_job_status"),
        sql.Identifier(jm.schema, "job_alert_nagios"),
    )
    assert admin.execute(per_problem).fetchall() == [("OKAll jobs run successfully",)]
    failures(rows, "BROKEN", 3)
    failures(rows, "SHAKY", 3, code=2)
    assert admin.execute(summary).fetchall() == [
        ("CRITICAL(BROKEN: 3 consecutive CRITICAL runs; SHAKY: 3 consecutive WARNING runs)",)
    ]


def test_the_check_runs_read_only_and_as_a_read_only_role(jm, rows, dsn, admin):
    failures(rows, "BROKEN", 3)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        rows_ro = conn.execute(
            sql.SQL("SELECT * FROM {}()").format(sql.Identifier(jm.schema, "check_job_status"))
        ).fetchall()
        assert rows_ro == [(3, "FAILED_RUN", "BROKEN", "3 consecutive CRITICAL runs")]
    role = f"{jm.schema}_monitor"
    schema = sql.Identifier(jm.schema)
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'monitor-pw'").format(sql.Identifier(role))
    )
    try:
        for grant in (
            "GRANT USAGE ON SCHEMA {s} TO {r}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}",
            "ALTER ROLE {r} SET default_transaction_read_only = on",
        ):
            admin.execute(sql.SQL(grant).format(s=schema, r=sql.Identifier(role)))
        params = conninfo_to_dict(dsn)
        params.update(user=role, password="monitor-pw")
        monitor = Jobmon(make_conninfo("", **params), schema=jm.schema)
        assert monitor.check_job_status() == [
            Alert(3, "FAILED_RUN", "BROKEN", "3 consecutive CRITICAL runs")
        ]
        assert monitor.check_summary().alert_code == 3
        monitor.close()
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {r}").format(r=sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {r}").format(r=sql.Identifier(role)))


def test_configure_check_upserts_upper_cased_names(jm, rows):
    created = jm.configure_check(
        "nightly load", warn=timedelta(hours=25), error=timedelta(hours=49)
    )
    assert created.job_name == "NIGHTLY LOAD"
    assert created.active is True
    updated = jm.configure_check(
        "Nightly Load",
        warn=timedelta(hours=1),
        error=timedelta(hours=2),
        sensitivity=2,
        escalate=3,
        active=False,
    )
    assert (updated.warn_threshold, updated.sensitivity, updated.escalate, updated.active) == (
        timedelta(hours=1),
        2,
        3,
        False,
    )
    assert [c.job_name for c in jm.list_checks()] == ["NIGHTLY LOAD"]
    assert jm.remove_check("nightly load") is True
    assert jm.remove_check("nightly load") is False
    assert jm.list_checks() == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warn": timedelta(hours=2), "error": timedelta(hours=1)}, "must not be shorter"),
        ({"warn": timedelta(hours=-1), "error": timedelta(hours=1)}, "must not be negative"),
        ({"warn": timedelta(0), "error": timedelta(hours=1)}, "longer than zero"),
        ({"warn": "1 hour", "error": timedelta(hours=1)}, r"must be a datetime\.timedelta"),
        ({"warn": None, "error": timedelta(hours=1)}, "warn threshold is required"),
        ({"sensitivity": -1}, "sensitivity must be 0"),
        ({"sensitivity": 40000}, "sensitivity must be 0"),
        ({"escalate": 0}, "escalate must be None or an int of 1 or more"),
        ({"active": "yes"}, "active must be True or False"),
    ],
)
def test_configure_check_refuses_nonsense(jm, kwargs, match):
    args = {"warn": timedelta(hours=1), "error": timedelta(hours=2), **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        jm.configure_check("job", **args)
    assert jm.list_checks() == []


def test_check_history_must_be_a_timedelta(jm):
    with pytest.raises(InvalidArgumentError, match=r"history must be a datetime\.timedelta"):
        jm.check_job_status("3 days")
    with pytest.raises(InvalidArgumentError, match="must not be negative"):
        jm.check_job_status(timedelta(days=-1))
