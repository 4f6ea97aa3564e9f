"""pg-jobmon through a real PgBouncer in transaction pooling mode.

Behind a transaction pooler every transaction (every statement, in autocommit) may run on
another server connection, shared with other clients. What lives in a session breaks:
prepared statements (a statement prepared on one server connection is missing, or another
client's, on the next) and session-level ``SET``. PgBouncer before 1.20 also refuses the
``options`` startup parameter that carries our time-outs. These tests run everything
through PgBouncer 1.18 (Debian 12's) with a pool of two server connections.

PgBouncer is a system package: without it these tests fail (never skip) and say how to
install it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devtools import pg, pgbouncer
from jobmon_core import DatabaseError, Jobmon, JobmonError, cli
from jobmon_core.errors import LockTimeoutError

from .tables import Rows

POOL_SIZE = 2


def start_bouncer(server_dsn: str, **kwargs: object):
    """PgBouncer in front of the server; a failure, never a skip, when it is not installed."""
    missing = None
    try:
        pgbouncer.find_binary()
    except pgbouncer.PgBouncerMissing as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    return pgbouncer.bouncer(server_dsn, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def direct_dsn(pg_server: pg.Server) -> Iterator[str]:
    """A fresh database of this module's own, reached directly (for setup and checks)."""
    with pg.fresh_database(pg_server, "jobmon_pgb") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def bouncer(pg_server: pg.Server, direct_dsn: str) -> Iterator[pgbouncer.Bouncer]:
    with start_bouncer(pg_server.dsn, pool_size=POOL_SIZE) as running:
        yield running


@pytest.fixture(scope="module")
def pooled_dsn(bouncer: pgbouncer.Bouncer, direct_dsn: str) -> str:
    """The module's database through PgBouncer (transaction pooling, 2 server connections)."""
    return bouncer.dsn_like(direct_dsn)


_numbers = iter(range(1, 10_000))


@pytest.fixture
def schema(direct_dsn: str) -> Iterator[str]:
    name = f"jm_pgb_{next(_numbers)}"
    yield name
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pjm(pooled_dsn: str, schema: str) -> Iterator[Jobmon]:
    """A Jobmon through PgBouncer, on a schema installed through PgBouncer."""
    jobmon = Jobmon(pooled_dsn, schema=schema)
    assert jobmon.install()
    yield jobmon
    jobmon.close()


@pytest.fixture
def direct(direct_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def rows(direct: psycopg.Connection, schema: str) -> Rows:
    return Rows(direct, schema)


def server_pids(direct: psycopg.Connection) -> set[int]:
    """The server backends of this database other than ``direct`` itself: PgBouncer's."""
    found = direct.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    ).fetchall()
    return {pid for (pid,) in found}


# -- the pooler itself ----------------------------------------------------------------------


def test_it_is_a_real_pgbouncer_pooling_transactions(bouncer, pooled_dsn, direct):
    assert bouncer.version >= (1, 18)
    with psycopg.connect(pooled_dsn, autocommit=True) as one:
        (server_pid,) = one.execute("SELECT pg_backend_pid()").fetchone()
        assert server_pid != one.info.backend_pid  # PgBouncer's own key, not a backend pid
        assert server_pid in server_pids(direct)
        # Why nothing may live in the session: a session-level SET of one client stays on
        # the server connection, and the next client lent that connection inherits it.
        one.execute("SET work_mem = '7MB'")
    with psycopg.connect(pooled_dsn, autocommit=True) as other:
        assert other.execute("SHOW work_mem").fetchone()[0] == "7MB"
        other.execute("RESET work_mem")
    assert len(server_pids(direct)) <= POOL_SIZE


def test_the_pooler_is_detected_prepared_statements_off_and_one_warning(
    pooled_dsn, schema, direct_dsn, caplog
):
    caplog.set_level(logging.INFO, logger="jobmon_core")
    secret = "S3cret-never-logged"  # PgBouncer (auth_type any) does not ask for it
    dsn = f"{pooled_dsn} application_name=detect-me password={secret}"  # a target of its own
    first, second = Jobmon(dsn, schema=schema), Jobmon(dsn, schema=schema)
    assert first.schema_version() == 0
    assert second.schema_version() == 0
    for jobmon in (first, second):
        assert jobmon._connection.pooled is True
        assert jobmon._connection.prepared is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per process and connection string
    text = warnings[0].getMessage()
    assert "refused the startup parameter 'options'" in text
    assert "ALTER ROLE" in text
    assert "SET lock_timeout = '5s'" in text
    assert "lock_timeout=None, statement_timeout=None" in text
    assert any("connection pooler" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text
    direct = Jobmon(direct_dsn, schema=schema)
    assert direct.schema_version() == 0
    assert direct._connection.pooled is False
    assert direct._connection.prepared is True
    for jobmon in (first, second, direct):
        jobmon.close()


def test_no_timeouts_and_no_prepare_connect_at_once_and_silently(pooled_dsn, schema, caplog):
    caplog.set_level(logging.INFO, logger="jobmon_core")
    dsn = pooled_dsn + " application_name=silent"
    jobmon = Jobmon(dsn, schema=schema, lock_timeout=None, statement_timeout=None, prepare=False)
    jobmon.schema_version()
    assert caplog.records == []
    assert jobmon._connection.prepared is False
    jobmon.close()


def test_a_pooler_that_drops_options_silently_is_noticed(pg_server, direct_dsn, schema, caplog):
    caplog.set_level(logging.WARNING, logger="jobmon_core")
    with start_bouncer(pg_server.dsn, ignore_startup_parameters=["options"]) as lax:
        jobmon = Jobmon(lax.dsn_like(direct_dsn), schema=schema)
        assert jobmon.schema_version() == 0
        assert jobmon._connection.pooled is True
        assert jobmon._connection.prepared is False
        jobmon.close()
    [warning] = caplog.records
    assert "did not pass it on (ignore_startup_parameters)" in warning.getMessage()


def test_forcing_prepared_statements_behind_pgbouncer_118_breaks_clearly(
    pg_server, direct_dsn, pjm
):
    """What auto-detection prevents: with prepare=True, two clients take turns on the same
    server connection and the second one's statement name is already taken there. (A
    PgBouncer of its own: the statements left behind on its server connections would
    trouble any later client that prepares.)"""
    with start_bouncer(pg_server.dsn, pool_size=1) as own:
        clients = [Jobmon(own.dsn_like(direct_dsn), schema=pjm.schema, prepare=True)] * 2
        clients[1] = Jobmon(own.dsn_like(direct_dsn), schema=pjm.schema, prepare=True)
        with pytest.raises(DatabaseError, match="prepared statement") as caught:
            for _ in range(20):
                for client in clients:
                    client.add_job("prepared")
        assert "prepare=False" in str(caught.value)
        for client in clients:
            client.close()


# -- everything works through it ------------------------------------------------------------


def test_install_through_pgbouncer_is_idempotent_and_safe_concurrently(pooled_dsn, schema):
    results: list[list[int] | BaseException] = []

    def install() -> None:
        try:
            results.append(Jobmon(pooled_dsn, schema=schema).install())
        except BaseException as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=install) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    applied = [r for r in results if isinstance(r, list) and r]
    assert len(results) == 3, results
    assert len(applied) == 1, results  # one did it, the others waited
    assert results.count([]) == 2
    assert Jobmon(pooled_dsn, schema=schema).install() == []


def test_the_durable_writer_through_pgbouncer(pjm, rows, direct):
    job = pjm.add_job("pooled job")
    for i in range(5):
        pjm.update_step(pjm.add_step(job, f"step {i}"), "OK", f"done {i}")
    pjm.close_job(job)
    failed = pjm.add_job("pooled failure")
    pjm.fail_job(failed, 2)
    cancelled = pjm.add_job("pooled cancel")
    pjm.cancel_job(cancelled)
    logs = {r["job_name"]: r for r in rows("job_log")}
    assert logs["POOLED JOB"]["status"] == "OK"
    assert logs["POOLED FAILURE"]["status"] == "WARNING"
    assert logs["POOLED CANCEL"]["status"] == "CRITICAL"
    details = rows("job_detail", "job_id = %s", [job])
    assert [(d["action"], d["message"]) for d in details] == [
        (f"step {i}", f"done {i}") for i in range(5)
    ]
    # No session belongs to a job behind a pooler: pid 0, so nothing follows a stranger.
    assert {r["pid"] for r in logs.values()} == {0}


def test_behind_a_pooler_cancel_job_never_signals_another_clients_query(
    pjm, pooled_dsn, direct, rows
):
    """The pooled server connection that ran add_job goes on to run other clients' queries:
    cancelling the job must not cancel theirs (it closes the job, signalling nobody)."""
    job = pjm.add_job("pooled orphan")
    with psycopg.connect(pooled_dsn, autocommit=True) as work:
        (caller_pid,) = work.execute("SELECT pg_backend_pid()").fetchone()
        assert Jobmon(pooled_dsn, schema=pjm.schema).add_job("by conn", conn=work)
    assert pjm.show_running() == []
    failures: list[BaseException] = []

    def stranger() -> None:
        try:
            with psycopg.connect(pooled_dsn, autocommit=True) as other:
                other.execute("SELECT pg_sleep(1.5)")
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=stranger)
    thread.start()
    time.sleep(0.3)
    assert pjm.cancel_job(job) is False  # nobody signalled
    thread.join()
    assert failures == []  # the stranger's query ran to its end
    logs = {r["job_name"]: r for r in rows("job_log")}
    assert logs["POOLED ORPHAN"]["status"] == "CRITICAL"
    assert logs["BY CONN"]["pid"] == 0
    assert caller_pid not in (0, None)


def test_the_buffered_writer_through_pgbouncer_leaves_no_session_state(
    pooled_dsn, pjm, rows, bouncer
):
    buffered = Jobmon(pooled_dsn, schema=pjm.schema, buffered=True, flush_interval=3600)
    job = buffered.add_job("buffered through the pool")
    steps = [buffered.add_step(job, f"step {i}") for i in range(300)]  # > one id block
    for step in steps[::2]:
        buffered.update_step(step, "OK", None)
    assert buffered.flush() == 300
    buffered.close_job(job)
    details = rows("job_detail")
    assert [d["action"] for d in details] == [f"step {i}" for i in range(300)]
    assert sum(d["status"] == "OK" for d in details) == 150
    # synchronous_commit = off was SET LOCAL: no server connection of the pool kept it
    holders = [psycopg.connect(pooled_dsn) for _ in range(POOL_SIZE)]
    try:
        seen = {h.execute("SHOW synchronous_commit").fetchone()[0] for h in holders}
        pids = {h.execute("SELECT pg_backend_pid()").fetchone()[0] for h in holders}
        assert len(pids) == POOL_SIZE  # every server connection of the pool was looked at
        assert seen == {"on"}
    finally:
        for h in holders:
            h.close()
    buffered.close()


def test_run_keys_and_context_managers_through_pgbouncer(pjm, pooled_dsn, rows):
    other = Jobmon(pooled_dsn, schema=pjm.schema)
    job = pjm.add_job("keyed", run_key="airflow:dag/run-1")
    assert other.add_job("keyed", run_key="airflow:dag/run-1") == job
    step = pjm.add_step(job, "task", step_key="task/1")
    assert other.add_step(job, "task", step_key="task/1") == step
    with pytest.raises(ValueError), pjm.job("context") as ctx:
        with ctx.step("fine"):
            pass
        with ctx.step("breaks"):
            raise ValueError("boom")
    with other.job("context ok") as ctx, ctx.step("one") as one:
        one.message = "hello"
    statuses = {r["job_name"]: r["status"] for r in rows("job_log")}
    assert statuses["CONTEXT"] == "CRITICAL"
    assert statuses["CONTEXT OK"] == "OK"
    assert [(d["action"], d["status"]) for d in rows("job_detail") if d["job_id"] != job] == [
        ("fine", "OK"),
        ("breaks", "CRITICAL"),
        ("one", "OK"),
    ]
    other.close()


def test_checks_and_reports_through_pgbouncer(pjm):
    from datetime import timedelta

    pjm.configure_check("nightly", warn=timedelta(hours=1), error=timedelta(hours=2))
    job = pjm.add_job("nightly")
    pjm.fail_job(job)
    alerts = pjm.check_job_status()
    assert [(a.job_name, a.alert_code) for a in alerts] == [("NIGHTLY", 3)]
    assert pjm.check_summary().alert_code == 3
    assert [c.job_name for c in pjm.list_checks()] == ["NIGHTLY"]
    assert [r.job_id for r in pjm.show_job("nightly")] == [job]
    assert pjm.show_job_like("^night")[0].job_id == job
    assert pjm.show_job_status("CRITICAL")[0].job_id == job
    assert pjm.show_detail(job) == []
    assert pjm.show_running() == []
    assert pjm.remove_check("nightly") is True


def test_the_cli_through_pgbouncer(pooled_dsn, schema, capsys, caplog):
    base = ["--dsn", pooled_dsn, "--schema", schema]
    assert cli.main([*base, "install"]) == 0
    assert "installed pg-jobmon in schema" in capsys.readouterr().out
    assert cli.main([*base, "check"]) == 0
    assert capsys.readouterr().out.startswith("JOBMON OK")
    assert cli.main([*base, "config", "set", "cli job", "--warn", "1h", "--error", "2h"]) == 0
    quiet = [*base, "--no-prepare", "--lock-timeout", "0", "--statement-timeout", "0"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli.main([*quiet, "check", "--format", "json", "--timeout", "5"]) == 2
    assert '"status": "CRITICAL"' in capsys.readouterr().out  # MISSING: never ran
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert cli.main([*base, "jobs", "--running"]) == 0
    assert cli.main([*base, "clear", "--older-than", "30d"]) == 0


def wait_for_a_lock_wait(direct: psycopg.Connection) -> None:
    """Wait until some backend of the database waits for a heavyweight lock."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    deadline = time.monotonic() + 5
    while not direct.execute(query).fetchall()[0][0]:
        assert time.monotonic() < deadline, "no backend ever waited for the lock"
        time.sleep(0.02)


def test_cancel_passes_through_pgbouncer(pjm, pooled_dsn, direct_dsn, direct):
    jobmon = Jobmon(pooled_dsn, schema=pjm.schema, lock_timeout=None, statement_timeout=None)
    job = jobmon.add_job("cancel me")
    failures: list[BaseException] = []

    def blocked() -> None:
        try:
            jobmon.add_step(job, "waits")
        except JobmonError as exc:
            failures.append(exc)

    locker = psycopg.connect(direct_dsn)
    try:
        locker.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.Identifier(pjm.schema, "job_detail")
            )
        )
        thread = threading.Thread(target=blocked)
        thread.start()
        wait_for_a_lock_wait(direct)
        jobmon.cancel()  # PgBouncer forwards the cancel request to the right server backend
        thread.join(5)
    finally:
        locker.rollback()
        locker.close()
    assert not thread.is_alive()
    assert len(failures) == 1
    assert "cancelled" in str(failures[0])
    jobmon.close()


def test_server_side_timeouts_bound_the_wait_behind_pgbouncer(pg_server):
    """The remedy the warning gives: with the time-outs set on the server (here per
    database; ALTER ROLE works alike), a blocked call behind PgBouncer gives up too."""
    with pg.fresh_database(pg_server, "jobmon_pgb_timeouts") as dsn:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET lock_timeout = '300ms'").format(
                    sql.Identifier(admin.info.dbname)
                )
            )
        with start_bouncer(pg_server.dsn) as own:
            jobmon = Jobmon(
                own.dsn_like(dsn), schema="jobmon", lock_timeout=None, statement_timeout=None
            )
            jobmon.install()
            job = jobmon.add_job("server side")
            with psycopg.connect(dsn) as locker:
                locker.execute("LOCK TABLE jobmon.job_detail IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                with pytest.raises(LockTimeoutError, match="the server's lock_timeout"):
                    jobmon.add_step(job, "blocked")
                assert time.monotonic() - started < 2
                locker.rollback()
            jobmon.add_step(job, "blocked")
            jobmon.close()


# -- no cross-talk between clients sharing two server connections --------------------------


@pytest.mark.parametrize("prepare", [None, False], ids=["prepare-auto", "prepare-off"])
def test_concurrent_writers_through_two_server_connections_never_mix(
    pjm, pooled_dsn, rows, direct, prepare
):
    writers, steps = 8, 25
    errors: list[BaseException] = []
    jobs: dict[int, int] = {}
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        try:
            jobmon = Jobmon(pooled_dsn, schema=pjm.schema, prepare=prepare)
            job = jobmon.add_job(f"writer {w}")
            jobs[w] = job
            start.wait(10)
            for s in range(steps):
                step = jobmon.add_step(job, f"writer {w} step {s}")
                jobmon.update_step(step, "OK", f"writer {w} done {s}")
            jobmon.close_job(job)
            jobmon.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(server_pids(direct)) <= POOL_SIZE  # eight clients, two server connections
    details = rows("job_detail")
    assert len(details) == writers * steps
    assert len({d["step_id"] for d in details}) == writers * steps
    for w, job in jobs.items():
        mine = [d for d in details if d["job_id"] == job]
        assert [d["action"] for d in mine] == [f"writer {w} step {s}" for s in range(steps)]
        assert [d["message"] for d in mine] == [f"writer {w} done {s}" for s in range(steps)]
        assert all(d["status"] == "OK" for d in mine)
    assert {r["job_name"]: r["status"] for r in rows("job_log")} == {
        f"WRITER {w}": "OK" for w in range(writers)
    }
