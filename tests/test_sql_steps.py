"""sql_step and sql_job: the caller's SQL on the caller's connection, logged as upstream."""

from __future__ import annotations

import signal

import psycopg
import pytest
from psycopg import sql

from jobmon_core import InvalidArgumentError


@pytest.fixture
def table(work):
    work.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, v text) ON COMMIT PRESERVE ROWS")
    work.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    work.commit()
    return "t"


def test_sql_step_logs_rows_affected_and_leaves_the_job_open(jm, rows, work, table):
    job = jm.add_job("sql step", conn=work)
    assert jm.sql_step(job, "update two", "UPDATE t SET v = 'x' WHERE id < %s", [3], conn=work)
    (step,) = rows("job_detail")
    assert (step["action"], step["status"], step["message"]) == (
        "update two",
        "OK",
        "Rows affected: 2",
    )
    assert rows("job_log")[0]["end_time"] is None  # upstream would close the job here
    assert work.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS  # not committed


def test_sql_step_failure_is_rolled_back_logged_and_the_transaction_goes_on(jm, rows, work, table):
    job = jm.add_job("sql step fail", conn=work)
    work.execute("UPDATE t SET v = 'kept' WHERE id = 1")
    assert not jm.sql_step(job, "bad column", "UPDATE t SET col3 = 1", conn=work)
    assert not jm.sql_step(job, "duplicate", "INSERT INTO t VALUES (2, 'dup')", conn=work)
    steps = rows("job_detail")
    assert [(s["status"], s["message"]) for s in steps] == [
        ("CRITICAL", 'ERROR: column "col3" of relation "t" does not exist'),
        ("CRITICAL", 'ERROR: duplicate key value violates unique constraint "t_pkey"'),
    ]
    # the caller's transaction is still usable and kept its own work
    assert work.execute("SELECT v FROM t WHERE id = 1").fetchone() == ("kept",)
    assert rows("job_log")[0]["status"] is None


def test_sql_step_on_autocommit_and_with_composed_sql(jm, rows, work, table):
    work.commit()
    work.autocommit = True
    job = jm.add_job("autocommit")
    query = sql.SQL("DELETE FROM {} WHERE id = 3").format(sql.Identifier("t"))
    assert jm.sql_step(job, "delete", query, conn=work)
    assert rows("job_detail")[0]["message"] == "Rows affected: 1"
    assert not jm.sql_step(job, "fails", "SELECT 1/0", conn=work)
    assert rows("job_detail")[1]["message"] == "ERROR: division by zero"


def test_sql_job_success(jm, rows, work, table):
    result = jm.sql_job("sql job", "UPDATE t SET v = 'it''s'", conn=work)
    (job,) = rows("job_log")
    assert result == f"Job logged with job id: {job['job_id']}"
    assert job["status"] == "OK"
    (step,) = rows("job_detail")
    assert step["action"] == "Running sql: 'UPDATE t SET v = ''it''''s'''"
    assert (step["status"], step["message"]) == ("OK", "Rows affected: 3")


def test_sql_job_quotes_backslashes_like_quote_literal(jm, rows, work, admin, table):
    query = r"SELECT 'a\b' FROM t"
    jm.sql_job("backslash", query, conn=work)
    (expected,) = admin.execute("SELECT 'Running sql: ' || quote_literal(%s)", [query]).fetchone()
    assert rows("job_detail")[0]["action"] == expected


def test_sql_job_failure_is_logged_and_returned(jm, rows, work, table):
    result = jm.sql_job("sql job bad", "UPDATE t SET col3 = 1", conn=work)
    (job,) = rows("job_log")
    assert result == f"Job ID {job['job_id']} failed. See job_detail table for more details"
    assert job["status"] == "CRITICAL"
    (step,) = rows("job_detail")
    assert step["status"] == "CRITICAL"
    assert step["message"].startswith('ERROR: column "col3"')
    assert work.execute("SELECT count(*) FROM t").fetchone() == (3,)  # transaction usable
    assert [r["alert_code"] for r in rows("job_check_log")] == [3]


def test_sql_job_with_a_concurrent_run_exits_gracefully(jm, rows, work, dsn, table):
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('sql_log'), hashtext('Busy Job'))")
        result = jm.sql_job("Busy Job", "UPDATE t SET v = 'never'", conn=work)
    assert result == "Concurrent job found. Obtaining advisory lock FAILED for job: Busy Job"
    (job,) = rows("job_log")
    assert job["status"] == "OK"
    (step,) = rows("job_detail")
    assert (step["action"], step["status"], step["message"]) == (
        "Obtaining advisory lock for job: Busy Job",
        "OK",
        "Found concurrent job. Exiting gracefully",
    )
    assert work.execute("SELECT count(*) FROM t WHERE v = 'never'").fetchone() == (0,)


def test_sql_job_releases_its_lock(jm, work, table, dsn):
    jm.sql_job("lock me", "SELECT 1", conn=work)
    jm.sql_job("lock me", "SELECT 1/0", conn=work)
    with psycopg.connect(dsn, autocommit=True) as other:
        (free,) = other.execute(
            "SELECT pg_try_advisory_lock(hashtext('sql_log'), hashtext('lock me'))"
        ).fetchone()
    assert free


def test_sql_job_in_an_aborted_transaction_fails_cleanly(jm, rows, work, table):
    with pytest.raises(psycopg.errors.DivisionByZero):
        work.execute("SELECT 1/0")
    result = jm.sql_job("aborted", "SELECT 1", conn=work)
    assert result.endswith("failed. See job_detail table for more details")
    (step,) = rows("job_detail")
    assert step["message"].startswith("ERROR: current transaction is aborted")


def test_sql_step_and_sql_job_need_a_connection(jm):
    job = jm.add_job("no conn")
    with pytest.raises(InvalidArgumentError, match=r"conn must be an open psycopg\.Connection"):
        jm.sql_step(job, "x", "SELECT 1", conn=None)
    with pytest.raises(InvalidArgumentError, match="conn must be"):
        jm.sql_job("x", "SELECT 1", conn="dsn")


class _TaskTimeout(BaseException):
    """What Airflow's execution_timeout raises in a task (from SIGALRM): not an Exception,
    so not an error of the statement."""


def test_an_interrupted_sql_step_is_closed_critical_and_the_interruption_goes_on(jm, rows, work):
    """A statement cut by something that is not an error of its own (a task timeout,
    Ctrl-C) leaves no step without a status: the step says what cut it, and the
    interruption propagates unchanged."""

    def time_out(signum: int, frame: object) -> None:
        raise _TaskTimeout("Timeout, PID: 42")

    job = jm.add_job("interrupted sql step", conn=work)
    previous = signal.signal(signal.SIGALRM, time_out)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_TaskTimeout):
            jm.sql_step(job, "cut", "SELECT pg_sleep(30)", conn=work)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        work.cancel_safe()
        work.close()  # the interrupted statement left it busy, as the task's own would be
    (step,) = rows("job_detail")
    assert (step["status"], step["message"]) == ("CRITICAL", "_TaskTimeout: Timeout, PID: 42")
