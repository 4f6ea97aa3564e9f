"""Faults the server side can throw at a running job: a restart, a crash, a killed client.

The promise under test: every call that returned has its row committed, exactly once; a call
made while the database is away raises a clear :class:`JobmonError` (it never hangs and
never loses what was already logged); the writer heals on the next call. These tests own a
PostgreSQL cluster of their own (same major version as the server under test) so they can
stop and crash it without disturbing the rest of the suite.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from devtools import pg
from jobmon_core import Jobmon, JobmonConnectionError, JobmonError


@pytest.fixture(scope="module")
def cluster(pg_server: pg.Server) -> Iterator[pg.PrivateCluster]:
    with pg.private_cluster(pg_server.version // 10000) as own:
        yield own


@pytest.fixture
def cluster_jm(cluster: pg.PrivateCluster) -> Iterator[Jobmon]:
    jobmon = Jobmon(cluster.dsn, connect_timeout=2)
    jobmon.install()
    yield jobmon
    jobmon.close()
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA jobmon CASCADE")


def _steps(dsn: str, job_id: int) -> list[tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT action, status FROM jobmon.job_detail WHERE job_id = %s ORDER BY step_id",
            [job_id],
        ).fetchall()


def _job_status(dsn: str, job_id: int) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT status FROM jobmon.job_log WHERE job_id = %s", [job_id]
        ).fetchone()
        assert row is not None
        status: str | None = row[0]
        return status


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_server_restart_mid_job_loses_nothing_and_the_writer_heals(cluster, cluster_jm, mode):
    """``fast`` is a clean restart; ``immediate`` is a crash followed by WAL recovery."""
    jm = cluster_jm
    job = jm.add_job("restarted mid job")
    for i in range(5):
        jm.update_step(jm.add_step(job, f"before {i}"), "OK", None)
    open_step = jm.add_step(job, "running when the server went away")

    cluster.stop(mode)
    started = time.monotonic()
    with pytest.raises(JobmonConnectionError, match="jobmon database"):
        jm.add_step(job, "while the server is down")
    with pytest.raises(JobmonError):
        jm.update_step(open_step, "OK", None)
    assert time.monotonic() - started < 5  # refused at once, never a hang

    cluster.start()
    jm.update_step(open_step, "OK", "finished after the restart")
    for i in range(3):
        jm.update_step(jm.add_step(job, f"after {i}"), "OK", None)
    jm.close_job(job)

    assert _steps(cluster.dsn, job) == [
        *[(f"before {i}", "OK") for i in range(5)],
        ("running when the server went away", "OK"),
        *[(f"after {i}", "OK") for i in range(3)],
    ]
    assert _job_status(cluster.dsn, job) == "OK"


def test_buffered_steps_survive_an_outage_in_memory(cluster, cluster_jm):
    """A flush that finds the server down keeps its steps and writes them once it is back."""
    jm = Jobmon(cluster.dsn, buffered=True, flush_interval=60, connect_timeout=2)
    try:
        job = jm.add_job("buffered through an outage")
        for i in range(50):
            jm.update_step(jm.add_step(job, f"step {i}"), "OK", None)
        cluster.stop("fast")
        with pytest.raises(JobmonConnectionError):
            jm.flush()
        for i in range(50, 60):
            jm.update_step(jm.add_step(job, f"step {i}"), "OK", None)
        cluster.start()
        jm.close_job(job)  # flushes first, then closes
    finally:
        jm.close()
    assert _steps(cluster.dsn, job) == [(f"step {i}", "OK") for i in range(60)]
    assert _job_status(cluster.dsn, job) == "OK"


ORPHAN = """
import os, signal, sys
from jobmon_core import Jobmon
jm = Jobmon(sys.argv[1], schema=sys.argv[2])
job = jm.add_job("killed mid job")
jm.update_step(jm.add_step(job, "done before the kill"), "OK", None)
jm.add_step(job, "running at the kill")
print(job, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _wait_for_backend_exit(admin: psycopg.Connection, pid: int) -> None:
    deadline = time.monotonic() + 10
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
        assert time.monotonic() < deadline, "the dead client's backend never went away"
        time.sleep(0.05)


def test_a_job_whose_process_was_killed_is_an_orphan_reported_like_upstream(jm, dsn, admin):
    jm.configure_check("killed mid job", warn=timedelta(seconds=1), error=timedelta(seconds=2))
    child = subprocess.run(
        [sys.executable, "-c", ORPHAN, dsn, jm.schema], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    job = int(child.stdout)
    (record,) = jm.show_job("killed mid job")
    _wait_for_backend_exit(admin, record.pid)

    # Its steps up to the kill are all there; the job is open, with no one behind it.
    assert [(s.action, s.status) for s in jm.show_detail(job)] == [
        ("done before the kill", "OK"),
        ("running at the kill", None),
    ]
    assert record.end_time is None
    assert record.status is None
    assert jm.show_running() == []  # its backend is gone: not "running"

    # Within its warn threshold a started run is not late; after it, MISSING, as upstream.
    assert jm.check_job_status()[0].alert_status == "OK"
    time.sleep(1.2)
    (warning,) = jm.check_job_status()
    assert (warning.alert_code, warning.alert_status, warning.job_name) == (
        2,
        "MISSING",
        "KILLED MID JOB",
    )
    time.sleep(1)
    assert jm.check_job_status()[0].alert_code == 3

    # How an orphan is closed: cancel_job fails it (no backend to signal), the check follows.
    assert jm.cancel_job(job) is False
    (closed,) = jm.show_job("killed mid job")
    assert closed.status == "CRITICAL"
    assert closed.end_time is not None
    assert jm.show_running() == []
