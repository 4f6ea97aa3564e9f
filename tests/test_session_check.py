"""A test run checks its server once (issue #12 item 9): a server the tests cannot use stops
the run at once with one sentence saying what the server needs, not with dozens of failures
that each show libpq's error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from devtools import pg

ROOT = Path(__file__).resolve().parent.parent


def test_the_server_under_test_passes_the_check(pg_server: pg.Server) -> None:
    assert pg.setup_problem(pg_server) is None


@pytest.fixture(scope="module")
def peer_only_server(pg_server: pg.Server) -> Iterator[pg.PrivateCluster]:
    """A cluster of our own that lets in its superuser and the non-superuser ``jm_plain``
    (trust) and refuses every other role's password login (``peer``, as many packaged
    servers do on their socket)."""
    with pg.private_cluster(pg_server.version // 10000) as own:
        with psycopg.connect(own.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE jm_plain LOGIN")
        Path(own.datadir, "pg_hba.conf").write_text(
            "local all postgres trust\nlocal all jm_plain trust\nlocal all all peer\n"
        )
        own.stop()
        own.start()
        yield own


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("postgres", "refuses a password login for a role the tests create"),
        ("jm_plain", "the role jm_plain at the socket in"),
        ("nobody_here", "cannot connect to the test server at the socket in"),
    ],
    ids=["password-logins-refused", "not-a-superuser", "cannot-connect"],
)
def test_a_server_the_tests_cannot_use_stops_the_run_with_one_sentence(
    peer_only_server: pg.PrivateCluster, user: str, expected: str
) -> None:
    dsn = make_conninfo(peer_only_server.dsn, user=user, dbname="postgres")
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         f"{__file__}::test_the_server_under_test_passes_the_check"],
        cwd=ROOT, env={**os.environ, "JOBMON_TEST_DSN": dsn},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    said = [line for line in output.splitlines() if "JOBMON_TEST_DSN:" in line]
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert len(said) == 1, output
    assert expected in said[0]
    assert "Traceback" not in output
    assert "passed" not in output
    assert "failed" not in output.replace(said[0], "")
    assert elapsed < 30, f"the check took {elapsed:.1f} s"
