"""cancel_job: signals only the session that started the job, logs the cancellation."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from jobmon_core import JobFinishedError

CANCEL_TEXT = "Manually cancelled via call to {schema}.cancel_job() by {user}"


def _wait_until_active(admin, pid: int) -> None:
    for _ in range(200):
        state = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        if state and state[0] == "active":
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never became active")


def test_cancel_interrupts_the_running_job_and_fails_it(jm, rows, work, admin):
    job = jm.add_job("long", conn=work)
    step = jm.add_step(job, "sleeping")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            work.execute("SELECT pg_sleep(30)")
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    _wait_until_active(admin, work.info.backend_pid)
    assert jm.cancel_job(job) is True
    thread.join(10)
    assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
    (user,) = admin.execute("SELECT current_user").fetchone()
    (job_row,) = rows("job_log")
    assert job_row["status"] == "CRITICAL"
    assert job_row["end_time"] is not None
    (detail,) = rows("job_detail")
    assert detail["step_id"] == step
    assert detail["status"] == "CRITICAL"
    assert detail["message"] == CANCEL_TEXT.format(schema=jm.schema, user=user)
    assert [r["alert_code"] for r in rows("job_check_log")] == [3]


def test_cancel_never_signals_a_reused_pid(jm, rows, work, admin):
    job = jm.add_job("reused pid", conn=work)
    # make the job older than the backend now holding its pid: that backend is not the job's
    rows.execute(
        "UPDATE job_log SET start_time = now() - interval '1 day' WHERE job_id = %s", [job]
    )
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(work.execute("SELECT pg_sleep(0.5), 'done'").fetchone())
    )
    thread.start()
    _wait_until_active(admin, work.info.backend_pid)
    assert jm.cancel_job(job) is False
    thread.join(10)
    assert outcome
    assert outcome[0][1] == "done"  # the unrelated query was left alone
    assert rows("job_log")[0]["status"] == "CRITICAL"


def test_cancel_closes_an_orphan_whose_backend_is_gone(jm, rows):
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, pid)"
        " VALUES (current_user, 'ORPHAN', now() - interval '1 hour', 2147483000)"
    )
    (orphan,) = rows("job_log")
    assert jm.cancel_job(orphan["job_id"]) is False
    (job,) = rows("job_log")
    assert job["status"] == "CRITICAL"
    (step,) = rows("job_detail")  # no step existed: one is added to say what happened
    assert step["action"] == "CANCEL JOB"
    assert step["message"].startswith("Manually cancelled via call to")


def test_cancel_refuses_a_finished_job(jm, rows):
    job = jm.add_job("done")
    jm.close_job(job)
    with pytest.raises(JobFinishedError, match="not cancelled"):
        jm.cancel_job(job)
    assert rows("job_log")[0]["status"] == "OK"


def test_cancel_quotes_the_schema_name_in_its_message(dsn, admin):
    from psycopg import sql

    from jobmon_core import Jobmon

    name = "Cancel Me"
    jm = Jobmon(dsn, schema=name)
    try:
        jm.install()
        job = jm.add_job("x")
        jm.add_step(job, "s")
        jm.cancel_job(job)
        (message,) = admin.execute(
            sql.SQL("SELECT message FROM {}").format(sql.Identifier(name, "job_detail"))
        ).fetchone()
        assert message.startswith('Manually cancelled via call to "Cancel Me".cancel_job() by ')
    finally:
        jm.close()
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
