"""Take over a schema that holds the pg_jobmon extension (1.4.x or 1.5.0), in place.

A user of the original has years of history in its tables and PL/pgSQL callers of its
functions. Adopting keeps all of that: every table of the extension stays with every row
(its sequences too, set past the highest id if they were behind), and only the extension's
code goes: its triggers, its trigger functions and its functions, which pg-jobmon's
migrations then create again under the same names and signatures. The ``pg_extension``
entry is removed (a schema cannot both be an extension's and ours: ``ALTER TABLE`` on an
extension's table would be lost on its next update, and ``DROP EXTENSION`` would drop our
data with it).

Everything runs in the caller's transaction (``install()``'s), so a failure at any point
leaves the extension exactly as it was.

Which migrations an adopted schema already satisfies: 0001 creates the 1.4 tables, which the
extension has, column for column, so 0001 is recorded as applied after the two objects of its
own that 1.4 lacks are added (:data:`BASELINE_SQL`). 0002 and 0003 create the trigger
functions, triggers and check functions the extension had under the same names; they run as
they are once the extension's are dropped, and so do the later ones, which add columns and
tables, or functions under names the extension's functions had (0009: add_job, show_job...).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..errors import SchemaError

logger = logging.getLogger(__name__)

EXTENSION = "pg_jobmon"
SUPPORTED_VERSION = re.compile(r"1\.4\.\d+|1\.5\.0")

# The pg_jobmon 1.4 tables that migration 0001 creates: (column, type, NOT NULL) in order.
TABLE_SHAPES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "job_log": (
        ("job_id", "bigint", True),
        ("owner", "text", True),
        ("job_name", "text", True),
        ("start_time", "timestamp with time zone", True),
        ("end_time", "timestamp with time zone", False),
        ("status", "text", False),
        ("pid", "integer", True),
    ),
    "job_detail": (
        ("job_id", "bigint", True),
        ("step_id", "bigint", True),
        ("action", "text", True),
        ("start_time", "timestamp with time zone", True),
        ("end_time", "timestamp with time zone", False),
        ("elapsed_time", "real", False),
        ("status", "text", False),
        ("message", "text", False),
    ),
    "job_check_log": (
        ("job_id", "bigint", True),
        ("job_name", "text", True),
        ("alert_code", "integer", True),
    ),
    "job_check_config": (
        ("job_name", "text", True),
        ("warn_threshold", "interval", True),
        ("error_threshold", "interval", True),
        ("active", "boolean", True),
        ("sensitivity", "smallint", True),
        ("escalate", "integer", False),
    ),
    "job_status_text": (
        ("alert_code", "integer", True),
        ("alert_text", "text", True),
    ),
}
# Kept as they are though no migration of ours knows them: the loopback settings.
OTHER_KEPT_TABLES = frozenset({"dblink_mapping_jobmon"})
# The keys our writer and triggers rely on (ON CONFLICT, the job_detail -> job_log cascade).
REQUIRED_CONSTRAINTS = frozenset(
    {
        "job_log_job_id_pkey",
        "job_detail_step_id_pkey",
        "job_detail_job_id_fkey",
        "job_check_config_job_name_pkey",
        "job_status_text_alert_code_pkey",
    }
)
# (sequence, table, column): each must be the column's own sequence.
SEQUENCES = (
    ("job_log_job_id_seq", "job_log", "job_id"),
    ("job_detail_step_id_seq", "job_detail", "step_id"),
)

# What migration 0001 creates that pg_jobmon 1.4 does not have. Run with search_path set to
# the schema, like the migrations; after it the schema is what 0001 makes (plus the mapping
# table), so 0001 is recorded as applied with its own checksum.
BASELINE_SQL = (
    "CREATE INDEX IF NOT EXISTS job_check_log_job_name_idx ON job_check_log (job_name, alert_code)",
    "CREATE VIEW job_alert_nagios (error_code, error_text) AS"
    " SELECT alert_code, alert_text FROM job_status_text",
)


@dataclass
class Adoption:
    """A takeover in progress: what is needed after the migrations have run."""

    schema: str
    version: str
    # (function name, identity arguments) -> its EXECUTE grants [(grantee, grantable)],
    # for the extension's functions whose privileges were not the default
    grants: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)


def extension_version(conn: psycopg.Connection, schema: str) -> str | None:
    """The version of the pg_jobmon extension installed in ``schema``, or None."""
    row = conn.execute(
        "SELECT e.extversion FROM pg_catalog.pg_extension e"
        " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
        " WHERE n.nspname = %s AND e.extname = %s",
        [schema, EXTENSION],
    ).fetchone()
    return None if row is None else str(row[0])


def take_over(conn: psycopg.Connection, schema: str, version: str) -> Adoption:
    """Turn the extension in ``schema`` into plain tables, ready for our migrations.

    Runs inside the caller's transaction. Raises :class:`SchemaError` (before changing
    anything) for a version or a table layout we do not know, or a role that may not do it.
    """
    if not SUPPORTED_VERSION.fullmatch(version):
        raise SchemaError(
            f"schema {schema!r} holds pg_jobmon {version}; install() takes over only "
            "pg_jobmon 1.4.x and 1.5.0: update the extension first "
            "(ALTER EXTENSION pg_jobmon UPDATE TO '1.4.1')"
        )
    ext_oid = _check_owner(conn, schema)
    _check_tables(conn, schema)
    members = _member_relations(conn, ext_oid)
    unknown = sorted(
        name
        for name, kind in members
        if kind != "S" and name not in TABLE_SHAPES and name not in OTHER_KEPT_TABLES
    )
    if unknown:
        raise SchemaError(
            f"the pg_jobmon extension in schema {schema!r} has relations install() does not "
            f"know ({', '.join(unknown)}); not taking it over"
        )
    adoption = Adoption(schema, version, _function_grants(conn, ext_oid))
    ext = sql.Identifier(EXTENSION)
    for table, trigger in _extension_triggers(conn, ext_oid):
        conn.execute(
            sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(trigger), sql.Identifier(schema, table)
            )
        )
    for name, kind in members:
        what = sql.SQL("SEQUENCE" if kind == "S" else "TABLE")
        conn.execute(
            sql.SQL("ALTER EXTENSION {} DROP {} {}").format(ext, what, sql.Identifier(schema, name))
        )
    try:
        with conn.transaction():  # a savepoint: the error below is ours to word
            conn.execute(sql.SQL("DROP EXTENSION {} RESTRICT").format(ext))
    except psycopg.errors.DependentObjectsStillExist as exc:
        detail = (exc.diag.message_detail or "").replace("\n", "; ")
        raise SchemaError(
            f"cannot take over pg_jobmon in schema {schema!r}: objects outside the extension "
            f"use its functions ({detail}); drop or change them first, then install() again"
        ) from exc
    return adoption


def apply_baseline(conn: psycopg.Connection) -> None:
    """Add what migration 0001 has and 1.4 lacks (search_path is the schema's already)."""
    for statement in BASELINE_SQL:
        conn.execute(sql.SQL(statement))  # our own constant text


def finish(conn: psycopg.Connection, adoption: Adoption) -> None:
    """After the migrations: the grants back, the sequences past the highest ids, a note.

    Last on purpose: ``setval`` is not undone by a rollback, so it comes after everything
    that might still fail (a sequence moved forward for nothing only leaves a gap in ids).
    """
    _restore_grants(conn, adoption)
    for sequence, table, column in SEQUENCES:
        _continue_past_max(conn, adoption.schema, sequence, table, column)
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sql.Identifier(adoption.schema, "jobmon_schema_migrations"),
            sql.Literal(
                f"pg-jobmon took over the pg_jobmon {adoption.version} extension in this "
                "schema: its tables and rows were kept, its functions replaced"
            ),
        )
    )
    logger.warning(
        "took over pg_jobmon %s in schema %s: every row kept, its functions replaced by "
        "pg-jobmon's under the same signatures. Its SQL callers logged through the one login "
        "in dblink_mapping_jobmon; pg-jobmon's log in as each caller's own role: give every "
        "role that logs from SQL its mapping (`jobmon sql-access ROLE`), then empty "
        "dblink_mapping_jobmon, which still holds a plain-text password",
        adoption.version,
        adoption.schema,
    )


def _restore_grants(conn: psycopg.Connection, adoption: Adoption) -> None:
    """Give our functions the EXECUTE grants the extension's functions of the same name and
    signature had, so a role that could call ``add_job(text)`` still can (run after the
    migrations). Functions with default privileges (EXECUTE for PUBLIC) need nothing."""
    for (name, arguments), grantees in adoption.grants.items():
        row = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p"
            " WHERE p.pronamespace = %s::regnamespace AND p.proname = %s"
            " AND pg_catalog.pg_get_function_identity_arguments(p.oid) = %s",
            [sql.Identifier(adoption.schema).as_string(conn), name, arguments],
        ).fetchone()
        if row is None:
            continue  # a private function of the extension's that we do not have
        # regprocedure's text is the server's own quoting of the signature
        function = sql.SQL(row[0])
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(function))
        for grantee, grantable in grantees:
            conn.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}{}").format(
                    function,
                    sql.SQL("PUBLIC") if grantee == "" else sql.Identifier(grantee),
                    sql.SQL(" WITH GRANT OPTION" if grantable else ""),
                )
            )


# -- checks ------------------------------------------------------------------------------------


def _check_owner(conn: psycopg.Connection, schema: str) -> int:
    """The extension's oid, once we know the current role may detach and drop it."""
    row = conn.execute(
        "SELECT e.oid, e.extowner::regrole::text,"
        " pg_catalog.pg_has_role(current_user, e.extowner, 'USAGE')"
        " FROM pg_catalog.pg_extension e WHERE e.extname = %s",
        [EXTENSION],
    ).fetchone()
    if row is None:  # pragma: no cover - the caller found it in this transaction
        raise SchemaError(f"schema {schema!r} no longer holds the pg_jobmon extension")
    oid, owner, allowed = row
    if not allowed:
        raise SchemaError(
            f"schema {schema!r} holds the pg_jobmon extension, owned by {owner}: run "
            f"install() as {owner} (or a superuser) to take it over"
        )
    return int(oid)


def _check_tables(conn: psycopg.Connection, schema: str) -> None:
    """The 1.4 tables are there with the columns, keys and sequences our code relies on."""
    rows = conn.execute(
        "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
        " a.attnotnull"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
        " WHERE c.relnamespace = %s::regnamespace AND c.relname = ANY(%s) AND c.relkind = 'r'"
        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        [sql.Identifier(schema).as_string(conn), list(TABLE_SHAPES)],
    ).fetchall()
    found: dict[str, list[tuple[str, str, bool]]] = {}
    for table, column, type_name, not_null in rows:
        found.setdefault(table, []).append((column, type_name, not_null))
    for table, expected in TABLE_SHAPES.items():
        if tuple(found.get(table, ())) != expected:
            have = ", ".join(
                f"{c} {t}{' NOT NULL' if n else ''}" for c, t, n in found.get(table, [])
            )
            raise SchemaError(
                f"pg_jobmon's table {schema}.{table} is not shaped like 1.4's "
                f"(it has: {have or 'no such table'}); not taking the extension over"
            )
    names = {
        r[0]
        for r in conn.execute(
            "SELECT conname FROM pg_catalog.pg_constraint WHERE connamespace = %s::regnamespace",
            [sql.Identifier(schema).as_string(conn)],
        )
    }
    missing = sorted(REQUIRED_CONSTRAINTS - names)
    if missing:
        raise SchemaError(
            f"pg_jobmon's tables in schema {schema!r} lack the keys {', '.join(missing)}; "
            "not taking the extension over"
        )
    for sequence, table, column in SEQUENCES:
        owned = conn.execute(
            "SELECT pg_catalog.pg_get_serial_sequence(%s, %s)::regclass = to_regclass(%s)",
            [
                sql.Identifier(schema, table).as_string(conn),
                column,
                sql.Identifier(schema, sequence).as_string(conn),
            ],
        ).fetchone()
        if owned is None or not owned[0]:
            raise SchemaError(
                f"{schema}.{table}.{column} does not take its ids from {schema}.{sequence} as "
                "in pg_jobmon 1.4; not taking the extension over"
            )


# -- catalog look-ups --------------------------------------------------------------------------


def _member_relations(conn: psycopg.Connection, ext_oid: int) -> list[tuple[str, str]]:
    """(name, relkind) of the extension's tables, sequences and views."""
    rows = conn.execute(
        "SELECT c.relname, c.relkind::text FROM pg_catalog.pg_depend d"
        " JOIN pg_catalog.pg_class c ON c.oid = d.objid"
        " WHERE d.classid = 'pg_catalog.pg_class'::regclass"
        " AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = %s"
        " AND d.deptype = 'e' ORDER BY 1",
        [ext_oid],
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def _extension_triggers(conn: psycopg.Connection, ext_oid: int) -> list[tuple[str, str]]:
    """(table, trigger) for every trigger that runs one of the extension's functions."""
    rows = conn.execute(
        "SELECT c.relname, t.tgname FROM pg_catalog.pg_trigger t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_depend d ON d.objid = t.tgfoid"
        "  AND d.classid = 'pg_catalog.pg_proc'::regclass"
        "  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = %s"
        "  AND d.deptype = 'e'"
        " WHERE NOT t.tgisinternal ORDER BY 1, 2",
        [ext_oid],
    ).fetchall()
    return [(str(table), str(trigger)) for table, trigger in rows]


def _function_grants(
    conn: psycopg.Connection, ext_oid: int
) -> dict[tuple[str, str], list[tuple[str, bool]]]:
    """The EXECUTE grants of the extension's functions that do not have default privileges
    (grantee '' is PUBLIC)."""
    rows = conn.execute(
        "SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),"
        " CASE WHEN a.grantee = 0 THEN '' ELSE a.grantee::regrole::text END, a.is_grantable"
        " FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid"
        " LEFT JOIN LATERAL pg_catalog.aclexplode(p.proacl) a ON a.privilege_type = 'EXECUTE'"
        " WHERE d.classid = 'pg_catalog.pg_proc'::regclass"
        " AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = %s"
        " AND d.deptype = 'e' AND p.proacl IS NOT NULL ORDER BY 1, 2, 3",
        [ext_oid],
    ).fetchall()
    grants: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for name, arguments, grantee, grantable in rows:
        entry = grants.setdefault((str(name), str(arguments)), [])
        if grantee is not None:
            # regrole's text is quoted where needed: unquote it for sql.Identifier
            entry.append((_unquote(str(grantee)), bool(grantable)))
    return grants


def _unquote(role: str) -> str:
    if role.startswith('"') and role.endswith('"'):
        return role[1:-1].replace('""', '"')
    return role


def _continue_past_max(
    conn: psycopg.Connection, schema: str, sequence: str, table: str, column: str
) -> None:
    """Make the sequence's next value larger than every id in the table (it is already,
    unless rows were inserted with explicit ids or the sequence was reset)."""
    seq = sql.Identifier(schema, sequence)
    row = conn.execute(
        sql.SQL("SELECT (SELECT max({}) FROM {}), s.last_value, s.is_called FROM {} s").format(
            sql.Identifier(column), sql.Identifier(schema, table), seq
        )
    ).fetchone()
    if row is None:  # pragma: no cover - a sequence always has its one row
        return
    highest, last_value, is_called = row
    next_value = last_value + 1 if is_called else last_value
    if highest is not None and highest >= next_value:
        conn.execute(
            "SELECT pg_catalog.setval(%s::regclass, %s, true)", [seq.as_string(conn), highest]
        )
