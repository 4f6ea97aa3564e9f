"""The SQL interface's way back into its own database: dblink, a foreign server, user mappings.

pg_jobmon's SQL functions (``add_job`` ... in migration 0009) commit each write on a dblink
connection to the same database, kept for the session. That connection logs in through a
foreign server of the ``dblink_fdw`` wrapper and the caller's *user mapping*, which is where
PostgreSQL keeps a connection's credentials out of reach: a mapping's password is visible
only to superusers and to the mapped role itself, never in a table every caller must read
(upstream's ``dblink_mapping_jobmon``).

``prepare`` (run by ``install()``) creates what it can: the dblink extension, the server
(one per database, shared by every jobmon schema in it, since it only says how to reach the
database) and a user mapping for the installing role, with the password it connected with.
``allow_role`` gives another role (a login role of the writer group) its mapping.
Without dblink, or without the right to create the server, install() still succeeds: the
Python side never needs any of this, and the SQL writers then raise PJ006 saying what to run.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from . import validation
from .errors import InvalidArgumentError, SchemaError
from .schema import INSTALL_LOCK_KEY

logger = logging.getLogger(__name__)

SERVER_NAME = "pg_jobmon_loopback"
"""The foreign server's name unless ``sql_loopback`` names another (an administrator may
point it at a server of their own: different host, port or options)."""
APPLICATION_NAME = "pg-jobmon SQL interface"
"""The loopback sessions' application_name in pg_stat_activity."""
SESSION_OPTIONS = "-c lock_timeout=5s -c statement_timeout=15s"
"""The loopback session's timeouts, the Python writer's defaults: a log write waiting for a
lock its own caller holds (an uncommitted UPDATE of the job's row) is a deadlock PostgreSQL
cannot see, across two sessions; it fails after 5 s instead of hanging the job forever."""


def prepare(conn: psycopg.Connection, schema: str, *, password: str | None) -> str | None:
    """Make the loopback ready for ``schema``; return None, or one sentence saying why the
    SQL writers cannot log yet and what to run. ``conn`` must not be in a transaction."""
    with conn.transaction():
        # install()'s lock: concurrent installs must not race to create the same objects
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [INSTALL_LOCK_KEY])
        if not _has_dblink(conn):
            reason = _create_dblink(conn)
            if reason:
                return reason
        server = _server_name(conn, schema)
        if server is None:
            reason = _create_server(conn)
            if reason:
                return reason
            server = SERVER_NAME
        conn.execute(  # the schema's record of its server (the one row of sql_loopback)
            sql.SQL(
                "INSERT INTO {} (server_name) VALUES (%s)"
                " ON CONFLICT (only_row) DO UPDATE SET server_name = excluded.server_name"
            ).format(sql.Identifier(schema, "sql_loopback")),
            [server],
        )
        _ensure_own_mapping(conn, server, password)
    return None


def allow_role(conn: psycopg.Connection, schema: str, role: str, password: str | None) -> None:
    """Give ``role`` a user mapping on the loopback server (logging in as itself, with
    ``password``) and USAGE on the server, so its sessions can log from SQL. Replaces the
    role's mapping if it has one. Run by the server's owner or a superuser."""
    validation.key(role, "role")
    validation.text(password, "password", allow_none=True)
    with conn.transaction():
        server = _server_name(conn, schema)
        if server is None:
            raise SchemaError(
                f"schema {schema!r} has no loopback server for the SQL interface: run "
                "`jobmon install` as a superuser with dblink available first"
            )
        exists = conn.execute("SELECT to_regrole(%s) IS NOT NULL", [_quoted(conn, role)])
        row = exists.fetchone()
        if not row or not row[0]:
            raise InvalidArgumentError(f"role {role!r} does not exist")
        _replace_mapping(conn, server, sql.Identifier(role), role, password)
        conn.execute(
            sql.SQL("GRANT USAGE ON FOREIGN SERVER {} TO {}").format(
                sql.Identifier(server), sql.Identifier(role)
            )
        )


def _quoted(conn: psycopg.Connection, role: str) -> str:
    return sql.Identifier(role).as_string(conn)


def _has_dblink(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'dblink')")
    found = row.fetchone()
    return bool(found and found[0])


def _create_dblink(conn: psycopg.Connection) -> str | None:
    """CREATE EXTENSION dblink, in ``public`` (so that dropping a jobmon schema never takes
    the extension, and every other schema's loopback, with it); a reason when it fails."""
    try:
        with conn.transaction():  # a savepoint: install() goes on without it
            conn.execute("CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public")
    except psycopg.Error as exc:
        reason = _first_line(exc)
        return (
            f"the SQL interface (add_job() ... from SQL) needs dblink, which could not be "
            f"installed ({reason}): as a superuser run CREATE EXTENSION dblink, then "
            "`jobmon install` again; the Python side works without it"
        )
    return None


def _server_name(conn: psycopg.Connection, schema: str) -> str | None:
    """The loopback server of ``schema``: the one ``sql_loopback`` names if it exists, else
    the shared default if it exists (another schema of this database created it), else
    None. Reads only."""
    row = conn.execute(
        sql.SQL(
            "SELECT s.srvname FROM pg_catalog.pg_foreign_server AS s"
            " WHERE s.srvname IN (SELECT server_name FROM {} UNION ALL SELECT %s)"
            " ORDER BY s.srvname = %s LIMIT 1"
        ).format(sql.Identifier(schema, "sql_loopback")),
        [SERVER_NAME, SERVER_NAME],
    ).fetchone()
    return str(row[0]) if row else None


def _create_server(conn: psycopg.Connection) -> str | None:
    """The loopback server: the address this connection reached the server at (TCP), else
    the first socket directory; this port; this database."""
    row = conn.execute(
        "SELECT coalesce(host(inet_server_addr()),"
        "  nullif(trim(split_part(current_setting('unix_socket_directories'), ',', 1)), ''),"
        "  'localhost'), current_setting('port'), current_database()"
    ).fetchone()
    assert row is not None
    host, port, dbname = row
    statement = sql.SQL(
        "CREATE SERVER {} FOREIGN DATA WRAPPER dblink_fdw"
        " OPTIONS (host {}, port {}, dbname {}, application_name {}, options {})"
    ).format(
        sql.Identifier(SERVER_NAME),
        sql.Literal(host),
        sql.Literal(port),
        sql.Literal(dbname),
        sql.Literal(APPLICATION_NAME),
        sql.Literal(SESSION_OPTIONS),
    )
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.Error as exc:
        return (
            f"the SQL interface's loopback server could not be created ({_first_line(exc)}): "
            "run `jobmon install` as a superuser (or a role with USAGE on the dblink_fdw "
            "wrapper); the Python side works without it"
        )
    logger.info("created foreign server %s (%s:%s, database %s)", SERVER_NAME, host, port, dbname)
    return None


def _ensure_own_mapping(conn: psycopg.Connection, server: str, password: str | None) -> None:
    """A mapping for the installing role, unless it has one (an administrator's stays)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_user_mappings"
        " WHERE srvname = %s AND usename = current_user)",
        [server],
    ).fetchone()
    if row and row[0]:
        return
    user_row = conn.execute("SELECT current_user").fetchone()
    assert user_row is not None
    _replace_mapping(conn, server, sql.SQL("CURRENT_USER"), str(user_row[0]), password)


def _replace_mapping(
    conn: psycopg.Connection,
    server: str,
    role: sql.Composable,
    login: str,
    password: str | None,
) -> None:
    options = [sql.SQL("user {}").format(sql.Literal(login))]
    if password:
        options.append(sql.SQL("password {}").format(sql.Literal(password)))
    conn.execute(
        sql.SQL("DROP USER MAPPING IF EXISTS FOR {} SERVER {}").format(role, sql.Identifier(server))
    )
    conn.execute(
        sql.SQL("CREATE USER MAPPING FOR {} SERVER {} OPTIONS ({})").format(
            role, sql.Identifier(server), sql.SQL(", ").join(options)
        )
    )


def _first_line(exc: psycopg.Error) -> str:
    return (exc.diag.message_primary or str(exc)).splitlines()[0]
