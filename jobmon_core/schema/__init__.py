"""Schema install and upgrade: numbered SQL migrations applied once each, in order.

Each file in ``migrations/`` is named ``NNNN_what_it_does.sql``. A file, once released, is
never edited: a change to the schema is a new file. ``install()`` records every applied file
in ``jobmon_schema_migrations`` (our own table; the pg_jobmon 1.4 tables are left exactly as
upstream has them) and applies only what is missing, all in one transaction, under an
advisory lock, so any number of processes may call it at the same moment.

The files use unqualified names. The runner sets ``search_path`` to the target schema (and
``pg_temp`` last) for the transaction, so tables land in that schema, and every function is
declared ``SET search_path FROM CURRENT``, which pins it to the schema it was created in.
That is how one set of files serves any schema name, quotes and all, with no string
formatting of SQL.

A schema that holds the pg_jobmon extension (1.4.x or 1.5.0) is taken over in place, in the
same transaction (see :mod:`.adopt`): its tables and rows stay, its code is replaced by the
migrations. Any other ``job_log`` we did not create is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from ..errors import SchemaError
from . import adopt

INSTALL_LOCK_KEY = 0x6A6F626D6F6E  # "jobmon" in ASCII: one advisory lock for all installs
MIGRATIONS_TABLE = "jobmon_schema_migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Every migration shipped with this version of pg-jobmon, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migration files are not numbered 1..n without gaps: {versions}")
    return found


def _applied_versions(conn: psycopg.Connection, schema: str) -> dict[int, str]:
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        [sql.Identifier(schema, MIGRATIONS_TABLE).as_string(conn)],
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        sql.SQL("SELECT version, checksum FROM {}").format(sql.Identifier(schema, MIGRATIONS_TABLE))
    ).fetchall()
    return dict(rows)


def _refuse_foreign_tables(conn: psycopg.Connection, schema: str) -> None:
    """Refuse to build over a job_log we did not create (and that no pg_jobmon owns)."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        [sql.Identifier(schema, "job_log").as_string(conn)],
    ).fetchone()
    if row and row[0]:
        raise SchemaError(
            f"schema {schema!r} already has a job_log table that pg-jobmon did not install "
            f"(no {MIGRATIONS_TABLE} table) and that is not the pg_jobmon extension's; "
            "refusing to touch it. Install into another schema."
        )


def _record(conn: psycopg.Connection, schema: str, m: Migration) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)").format(
            sql.Identifier(schema, MIGRATIONS_TABLE)
        ),
        [m.version, m.name, m.checksum],
    )


def install(conn: psycopg.Connection, schema: str) -> list[int]:
    """Bring ``schema`` up to the newest version; return the versions applied now.

    ``conn`` must not be in a transaction: the whole upgrade is one transaction of its own.
    """
    migrations = load_migrations()
    schema_id = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [INSTALL_LOCK_KEY])
        applied = _applied_versions(conn, schema)
        newest = max(applied, default=0)
        if newest > len(migrations):
            raise SchemaError(
                f"schema {schema!r} is at version {newest}, newer than this pg-jobmon knows "
                f"({len(migrations)}); upgrade the pg-jobmon package"
            )
        for m in migrations:
            if m.version in applied and applied[m.version] != m.checksum:
                raise SchemaError(
                    f"migration {m.version:04d}_{m.name} differs from the one applied to "
                    f"schema {schema!r}; released migrations must never be edited"
                )
        pending = [m for m in migrations if m.version not in applied]
        if not pending:
            return []
        adoption = None
        if not applied:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema_id))
            version = adopt.extension_version(conn, schema)
            if version is not None:
                adoption = adopt.take_over(conn, schema, version)
            else:
                _refuse_foreign_tables(conn, schema)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (version integer PRIMARY KEY, name text NOT NULL,"
                    " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                    " applied_by text NOT NULL DEFAULT current_user)"
                ).format(sql.Identifier(schema, MIGRATIONS_TABLE))
            )
        conn.execute(sql.SQL("SET LOCAL search_path TO {}, pg_temp").format(schema_id))
        to_run = pending
        if adoption is not None:
            # the extension's tables are what 0001 creates, once its extras are added
            adopt.apply_baseline(conn)
            _record(conn, schema, pending[0])
            to_run = pending[1:]
        for m in to_run:
            conn.execute(sql.SQL(m.text))  # our own shipped file, checksummed
            _record(conn, schema, m)
        if adoption is not None:
            adopt.finish(conn, adoption)
    return [m.version for m in pending]


def installed_version(conn: psycopg.Connection, schema: str) -> int:
    """The newest migration applied to ``schema``; 0 when pg-jobmon is not installed there."""
    return max(_applied_versions(conn, schema), default=0)
