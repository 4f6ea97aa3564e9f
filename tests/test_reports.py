"""The show_* reports and job_log_clear."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from jobmon_core import InvalidArgumentError, JobRecord, StepRecord


def test_show_job_newest_first_upper_cased_and_limited(jm):
    ids = [jm.add_job("report me") for _ in range(12)]
    jm.add_job("other")
    shown = jm.show_job("Report Me")
    assert [j.job_id for j in shown] == ids[::-1][:10]
    assert all(isinstance(j, JobRecord) and j.job_name == "REPORT ME" for j in shown)
    assert [j.job_id for j in jm.show_job("report me", limit=2)] == ids[::-1][:2]


def test_show_job_like_matches_case_insensitively_with_working_escapes(jm):
    a = jm.add_job("load 2024 part 1")
    b = jm.add_job("load 2025")
    jm.add_job("unload")
    assert [j.job_id for j in jm.show_job_like(r"^load \d+$")] == [b]
    assert [j.job_id for j in jm.show_job_like("^LoAd")] == [b, a]


def test_show_job_like_refuses_a_broken_pattern(jm):
    with pytest.raises(InvalidArgumentError, match="not a valid POSIX regular expression"):
        jm.show_job_like("(unclosed")


def test_show_job_status_with_and_without_a_name(jm):
    a = jm.add_job("a")
    jm.fail_job(a)
    b = jm.add_job("b")
    jm.fail_job(b)
    jm.close_job(jm.add_job("a"))
    assert [j.job_id for j in jm.show_job_status("CRITICAL")] == [b, a]
    assert [j.job_id for j in jm.show_job_status("CRITICAL", name="a")] == [a]
    assert jm.show_job_status("critical") == []  # status is compared exactly, as upstream


def test_show_detail_by_id_and_by_name(jm):
    runs = []
    for run in range(3):
        job = jm.add_job("detailed")
        runs.append(job)
        for i in range(2):
            step = jm.add_step(job, f"run {run} step {i}")
            jm.update_step(step, "OK", None)
    by_id = jm.show_detail(runs[0])
    assert [s.action for s in by_id] == ["run 0 step 0", "run 0 step 1"]
    assert all(isinstance(s, StepRecord) and s.elapsed_time is not None for s in by_id)
    assert [s.action for s in jm.show_detail("detailed")] == ["run 2 step 0", "run 2 step 1"]
    assert [s.action for s in jm.show_detail("Detailed", jobs=2)] == [
        "run 2 step 0",
        "run 2 step 1",
        "run 1 step 0",
        "run 1 step 1",
    ]


def test_show_running_reports_only_live_runs(jm, rows, work):
    live = jm.add_job("live", conn=work)
    jm.close_job(jm.add_job("finished"))
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, pid) VALUES"
        " (current_user, 'ORPHAN', now() - interval '1 hour', 2147483000),"
        " (current_user, 'REUSED PID', now() - interval '1 day', %s)",
        [work.info.backend_pid],
    )
    no_conn = jm.add_job("logged without conn")  # the logging session is its live session
    assert [j.job_id for j in jm.show_running()] == [no_conn, live]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda jm: jm.show_job("x", limit=0), "limit must be a positive int"),
        (lambda jm: jm.show_job(""), "job name must not be empty"),
        (lambda jm: jm.show_detail(0), "job_id must be between 1"),
        (lambda jm: jm.show_detail("x", jobs=-1), "jobs must be a positive int"),
        (lambda jm: jm.show_job_status(None), "status must be a string"),
        (lambda jm: jm.job_log_clear("30 days"), "older_than must be a datetime.timedelta"),
        (lambda jm: jm.job_log_clear(timedelta(days=-1)), "older_than must be"),
        (lambda jm: jm.job_log_clear(timedelta(days=1), batch_size=0), "batch_size"),
    ],
)
def test_report_arguments_are_checked(jm, call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(jm)


def test_job_log_clear_deletes_old_runs_in_batches_and_logs_itself(jm, rows):
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, end_time, status, pid)"
        " SELECT current_user, 'OLD JOB', now() - interval '40 days' + g * interval '1 minute',"
        "  now() - interval '40 days', 'OK', 1 FROM generate_series(1, 25) g"
    )
    rows.execute(
        "INSERT INTO job_detail (job_id, action, start_time)"
        " SELECT job_id, 'old step', start_time FROM job_log"
    )
    recent = jm.add_job("recent job")
    jm.add_step(recent, "kept")
    assert jm.job_log_clear(timedelta(days=30), batch_size=10) == 25
    names = {r["job_name"] for r in rows("job_log")}
    assert "OLD JOB" not in names
    assert "RECENT JOB" in names
    assert [d["action"] for d in rows("job_detail") if d["job_id"] == recent] == ["kept"]
    (purge,) = [r for r in rows("job_log") if r["job_name"].startswith("PURGING PG_JOBMON")]
    assert purge["status"] == "OK"
    (step,) = jm.show_detail(purge["job_id"])
    assert step.action.startswith("Purging pg_jobmon job logs older than ")
    assert step.message == "Deleted 25 rows from job_log and associated rows in job_detail"
    assert jm.job_log_clear(timedelta(days=30)) == 0
    latest = jm.show_job_like("^PURGING", limit=1)[0]
    (step,) = jm.show_detail(latest.job_id)
    assert step.message.startswith("No jobs logged older than ")


def test_job_log_clear_does_not_block_writers(jm, rows, dsn):
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, pid)"
        " SELECT current_user, 'BULK', now() - interval '100 days', 1"
        " FROM generate_series(1, 20000)"
    )
    writer_latencies: list[float] = []
    stop = threading.Event()

    def write() -> None:
        from jobmon_core import Jobmon

        other = Jobmon(dsn, schema=jm.schema)
        job = other.add_job("concurrent writer")
        while not stop.is_set():
            started = time.perf_counter()
            other.update_step(other.add_step(job, "step"), "OK", None)
            writer_latencies.append(time.perf_counter() - started)
        other.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert jm.job_log_clear(timedelta(days=30), batch_size=2000) == 20000
    finally:
        stop.set()
        thread.join(10)
    assert writer_latencies
    assert max(writer_latencies) < 2.0  # no writer waited for the purge
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_failing_purge_fails_its_step_and_its_job(jm, rows, dsn):
    """The purge is logged through ``jm.job()``/``job.step()``: an error fails the step with
    upstream's ``ERROR: <message>`` and the job, and propagates."""
    from jobmon_core import Jobmon, LockTimeoutError

    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, pid)"
        " VALUES (current_user, 'OLD', now() - interval '60 days', 1)"
    )
    impatient = Jobmon(dsn, schema=jm.schema, lock_timeout=0.2)
    with psycopg.connect(dsn) as holder:
        holder.execute(
            psycopg.sql.SQL("SELECT * FROM {} WHERE job_name = 'OLD' FOR UPDATE").format(
                psycopg.sql.Identifier(jm.schema, "job_log")
            )
        )
        with pytest.raises(LockTimeoutError):
            impatient.job_log_clear(timedelta(days=30))
    impatient.close()
    (purge,) = jm.show_job_like("^PURGING")
    assert purge.status == "CRITICAL"
    (step,) = jm.show_detail(purge.job_id)
    assert step.action.startswith("Purging pg_jobmon job logs older than ")
    assert step.status == "CRITICAL"
    assert step.message.startswith("ERROR: ")
    assert "gave up waiting for a lock" in step.message


def test_an_interrupted_purge_still_ends_its_job(jm, dsn):
    """Ctrl-C (or any BaseException) inside the purge: the job is failed, not left open, as
    ``jm.job()`` guarantees for every job (the purge's own copy caught ``Exception`` only)."""
    from jobmon_core import Jobmon
    from jobmon_core.plugins import hookimpl, new_plugin_manager

    class Interrupt:
        @hookimpl
        def jobmon_step_finished(self, status):
            if status == "OK":
                raise KeyboardInterrupt

    manager = new_plugin_manager(load_entry_points=False)
    manager.register(Interrupt())
    interrupted = Jobmon(dsn, schema=jm.schema, plugins=manager)
    with pytest.raises(KeyboardInterrupt):
        interrupted.job_log_clear(timedelta(days=30))
    interrupted.close()
    (purge,) = jm.show_job_like("^PURGING")
    assert purge.status == "CRITICAL"
    assert purge.end_time is not None
