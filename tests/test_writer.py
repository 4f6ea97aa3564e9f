"""The writer: add_job, add_step, update_step, close/fail, with upstream semantics."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from jobmon_core import (
    InvalidArgumentError,
    JobFinishedError,
    JobNotFoundError,
    StatusTableError,
    StatusTextError,
    StepNotFoundError,
)


def test_add_job_upper_cases_with_the_database_upper(jm, rows, admin):
    name = "nightly Straße load ǆ"
    job_id = jm.add_job(name)
    (expected,) = admin.execute("SELECT upper(%s)", [name]).fetchone()
    (job,) = rows("job_log")
    assert job["job_id"] == job_id
    assert job["job_name"] == expected
    assert job["end_time"] is None
    assert job["status"] is None


def test_owner_and_pid_are_the_logging_sessions_without_conn(jm, rows, admin):
    jm.add_job("no conn")
    (job,) = rows("job_log")
    (user,) = admin.execute("SELECT current_user").fetchone()
    assert job["owner"] == user
    assert job["pid"] == jm._connection.backend_pid


def test_owner_and_pid_come_from_the_work_connection(jm, rows, work, admin):
    admin.execute("DROP ROLE IF EXISTS jobmon_test_owner")
    admin.execute("CREATE ROLE jobmon_test_owner")
    try:
        work.execute("SET ROLE jobmon_test_owner")
        work.commit()
        jm.add_job("with conn", conn=work)
        (job,) = rows("job_log")
        assert job["owner"] == "jobmon_test_owner"
        assert job["pid"] == work.info.backend_pid
        assert job["pid"] != jm._connection.backend_pid
    finally:
        work.rollback()
        work.execute("RESET ROLE")
        work.commit()
        admin.execute("DROP ROLE jobmon_test_owner")


@pytest.mark.parametrize("state", ["idle", "in transaction", "aborted", "autocommit"])
def test_reading_the_work_connection_leaves_its_state_alone(jm, rows, work, state):
    TS = psycopg.pq.TransactionStatus
    if state == "in transaction":
        work.execute("SELECT 1")
    elif state == "aborted":
        with pytest.raises(psycopg.errors.DivisionByZero):
            work.execute("SELECT 1/0")
    elif state == "autocommit":
        work.autocommit = True
    before = work.info.transaction_status
    jm.add_job(f"state {state}", conn=work)
    assert work.info.transaction_status == before
    assert (
        before
        == {
            "idle": TS.IDLE,
            "in transaction": TS.INTRANS,
            "aborted": TS.INERROR,
            "autocommit": TS.IDLE,
        }[state]
    )
    (job,) = rows("job_log")
    assert job["pid"] == work.info.backend_pid
    assert job["owner"]


def test_steps_update_overwrite_and_keep_null_messages(jm, rows):
    job = jm.add_job("steps")
    first = jm.add_step(job, "first")
    second = jm.add_step(job, "second")
    assert second > first
    jm.update_step(first, "RUNNING", "half way")
    jm.update_step(first, "OK", None)
    jm.update_step(second, "WARNING", "slow")
    details = rows("job_detail")
    assert [(d["step_id"], d["action"], d["status"], d["message"]) for d in details] == [
        (first, "first", "OK", None),
        (second, "second", "WARNING", "slow"),
    ]
    for d in details:
        assert d["job_id"] == job
        assert d["end_time"] >= d["start_time"]
        assert d["elapsed_time"] == pytest.approx(
            (d["end_time"] - d["start_time"]).total_seconds(), abs=1e-3
        )


def test_close_and_fail_set_status_texts_and_end_time(jm, rows):
    ok, warn, crit = jm.add_job("a"), jm.add_job("b"), jm.add_job("c")
    jm.close_job(ok)
    jm.fail_job(warn, 2)
    jm.fail_job(crit)
    statuses = {r["job_id"]: (r["status"], r["end_time"] is not None) for r in rows("job_log")}
    assert statuses == {ok: ("OK", True), warn: ("WARNING", True), crit: ("CRITICAL", True)}


def test_finishing_a_finished_job_is_refused_and_rewrites_nothing(jm, rows):
    job = jm.add_job("twice")
    jm.fail_job(job)
    before = rows("job_log")
    checks = rows("job_check_log")
    with pytest.raises(JobFinishedError, match="already finished"):
        jm.close_job(job)
    with pytest.raises(JobFinishedError):
        jm.fail_job(job, 2)
    assert rows("job_log") == before
    assert rows("job_check_log") == checks


def test_unknown_ids_are_typed_errors(jm):
    with pytest.raises(JobNotFoundError, match="no job with job_id 424242"):
        jm.add_step(424242, "x")
    with pytest.raises(StepNotFoundError, match="no step with step_id 434343"):
        jm.update_step(434343, "OK", None)
    with pytest.raises(JobNotFoundError):
        jm.close_job(444444)
    with pytest.raises(JobNotFoundError):
        jm.fail_job(454545)
    with pytest.raises(JobNotFoundError):
        jm.cancel_job(464646)


def test_a_level_without_text_is_refused_and_the_job_stays_open(jm, rows):
    job = jm.add_job("level 7")
    with pytest.raises(StatusTextError, match="alert level 7 has no text"):
        jm.fail_job(job, 7)
    (row,) = rows("job_log")
    assert row["status"] is None
    assert row["end_time"] is None
    assert rows("job_check_log") == []


def test_custom_levels_use_their_texts(jm, rows):
    rows.execute("INSERT INTO job_status_text VALUES (4, 'PAGE SOMEONE')")
    job = jm.add_job("level 4")
    jm.fail_job(job, 4)
    assert rows("job_log")[0]["status"] == "PAGE SOMEONE"
    assert [(r["job_id"], r["alert_code"]) for r in rows("job_check_log")] == [(job, 4)]


def test_a_custom_status_table_supplies_the_texts(jm, rows):
    rows.execute(
        "CREATE TABLE my_status (alert_code int PRIMARY KEY, alert_text text NOT NULL);"
        "INSERT INTO my_status VALUES (1, 'GREEN'), (2, 'AMBER'), (3, 'RED')"
    )
    a, b, c = jm.add_job("a"), jm.add_job("b"), jm.add_job("c")
    jm.close_job(a, status_table="my_status")
    jm.fail_job(b, 2, status_table="my_status")
    jm.cancel_job(c, status_table="my_status")
    statuses = {r["job_id"]: r["status"] for r in rows("job_log")}
    assert statuses == {a: "GREEN", b: "AMBER", c: "RED"}


@pytest.mark.parametrize(
    "status_table",
    [
        "no_such_table",
        "job_status_text; DROP TABLE job_log; --",
        'job_status_text" ; DROP TABLE job_log; --',
        "pg_catalog.pg_class",
        "job_log",  # exists, but has no alert_code/alert_text
    ],
)
def test_status_table_must_be_a_table_of_the_schema(jm, rows, status_table):
    job = jm.add_job("status table")
    with pytest.raises(StatusTableError):
        jm.close_job(job, status_table=status_table)
    (row,) = rows("job_log")
    assert row["status"] is None


def test_ids_are_bigint_past_2_to_the_31(jm, rows):
    rows.execute("SELECT setval('job_log_job_id_seq', 3000000000)")
    rows.execute("SELECT setval('job_detail_step_id_seq', 3000000000)")
    job = jm.add_job("big")
    step = jm.add_step(job, "big step")
    jm.update_step(step, "OK", "fine")
    jm.close_job(job)
    assert job > 2**31
    assert step > 2**31
    assert rows("job_log")[0]["status"] == "OK"


def test_a_sequence_behind_the_table_is_a_clear_error(jm, rows):
    job = jm.add_job("first")
    rows.execute("SELECT setval('job_log_job_id_seq', %s, false)", [job])
    jm._writer._next_job_id = None  # no reservation: the next id comes from the sequence
    with pytest.raises(Exception, match="sequence is behind the table"):
        jm.add_job("second")


def test_steps_survive_the_callers_rollback(jm, rows, work):
    work.execute("CREATE TEMP TABLE t (x int)")
    job = jm.add_job("rollback", conn=work)
    step = jm.add_step(job, "insert")
    work.execute("INSERT INTO t VALUES (1)")
    jm.update_step(step, "OK", "inserted")
    work.rollback()
    jm.close_job(job)
    assert [(d["action"], d["status"]) for d in rows("job_detail")] == [("insert", "OK")]
    assert rows("job_log")[0]["status"] == "OK"


def test_steps_survive_an_aborted_and_read_only_transaction(jm, rows, work):
    work.execute("SET TRANSACTION READ ONLY")
    job = jm.add_job("aborted", conn=work)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        work.execute("CREATE TABLE nope (x int)")
    step = jm.add_step(job, "after the error")
    jm.update_step(step, "CRITICAL", "the transaction is aborted, the log is not")
    jm.fail_job(job)
    work.rollback()
    assert rows("job_detail")[0]["status"] == "CRITICAL"
    assert rows("job_log")[0]["status"] == "CRITICAL"


def test_the_writer_never_writes_through_the_work_connection(jm, work, admin):
    work.execute("SELECT 1")  # open a transaction on the work connection
    xid_before = work.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0]
    job = jm.add_job("hands off", conn=work)
    jm.add_step(job, "x")
    jm.close_job(job)
    assert work.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] == xid_before
    assert xid_before is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda jm: jm.add_job(""), "job name must not be empty"),
        (lambda jm: jm.add_job("   "), "must not be empty"),
        (lambda jm: jm.add_job(None), "job name must be a string, not None"),
        (lambda jm: jm.add_job(42), "must be a string, not int"),
        (lambda jm: jm.add_job("nul\x00byte"), "NUL character"),
        (lambda jm: jm.add_step(0, "x"), "job_id must be between 1"),
        (lambda jm: jm.add_step(-5, "x"), "job_id must be between 1"),
        (lambda jm: jm.add_step(2**63, "x"), "job_id must be between 1"),
        (lambda jm: jm.add_step("1", "x"), "job_id must be an int"),
        (lambda jm: jm.add_step(True, "x"), "job_id must be an int"),
        (lambda jm: jm.add_step(1, None), "action must be a string"),
        (lambda jm: jm.update_step(1, None, "m"), "status must be a string"),
        (lambda jm: jm.update_step(1, "OK", "a\x00b"), "message contains a NUL"),
        (lambda jm: jm.fail_job(1, 0), "level must be a positive"),
        (lambda jm: jm.fail_job(1, "3"), "level must be an int"),
        (lambda jm: jm.close_job(1, status_table=""), "status_table must not be empty"),
        (lambda jm: jm.close_job(1, status_table="x" * 64), "63-byte limit"),
        (lambda jm: jm.add_job("x", conn="not a connection"), "conn must be an open"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(jm, rows, call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(jm)
    assert rows("job_log") == []
    assert rows("job_detail") == []


def test_many_threads_share_one_jobmon(jm, rows):
    from concurrent.futures import ThreadPoolExecutor

    job = jm.add_job("threads")

    def log(i: int) -> int:
        step = jm.add_step(job, f"step {i}")
        jm.update_step(step, "OK", str(i))
        return step

    with ThreadPoolExecutor(8) as pool:
        steps = list(pool.map(log, range(200)))
    assert len(set(steps)) == 200
    details = rows("job_detail")
    assert len(details) == 200
    assert {d["message"] for d in details} == {str(i) for i in range(200)}


def test_jobmon_is_usable_in_a_with_block_and_reconnects_after_close(jm, rows):
    with jm:
        jm.add_job("one")
    jm.add_job("two")  # close() only closed the connection
    assert len(rows("job_log")) == 2


def test_status_table_quoting_uses_identifiers(jm, rows):
    rows.execute(
        'CREATE TABLE "Odd ""Status"" Table" (alert_code int, alert_text text);'
        """INSERT INTO "Odd ""Status"" Table" VALUES (1, 'FINE')"""
    )
    job = jm.add_job("odd")
    jm.close_job(job, status_table='Odd "Status" Table')
    assert rows("job_log")[0]["status"] == "FINE"
    assert sql.Identifier("x")  # psycopg.sql is what quotes it
