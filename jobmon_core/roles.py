"""Least-privilege roles for a jobmon schema: a writer, a monitor and an admin.

pg_jobmon's README tells admins to grant every logging role everything on every table. Here
each kind of user gets what its calls need, and no more:

- the **writer** (what jobs and Airflow log with) adds runs and steps and finishes them. It
  can read the log, but it cannot delete or rewrite history (only the columns a finish sets
  are updatable), and it cannot read or change the monitoring configuration or the
  monitoring state. The triggers that keep that state run as their owner (migration 0005);
- the **monitor** (Nagios, ``jobmon check``, dashboards) reads: ``check_job_status``,
  ``check_job_summary``, the reports and the configuration; it writes only
  ``job_alert_state``, the levels the notifiers last heard (``jobmon check --notify``);
- the **admin** configures monitoring, edits status texts and purges old runs: all DML on
  the jobmon tables, which covers everything the writer and the monitor do. It gets direct
  grants rather than membership of the other two, so each role can be created alone and
  ``\\dp`` shows the admin's privileges as they are. Nobody but the owner (the role that ran
  ``install()``) gets DDL: upgrades stay with it.

The roles are created NOLOGIN (a DBA grants them to login roles); existing roles are reused
as they are. Grants are additive and idempotent, and they cover the objects that exist at
the newest schema version, so re-running them after an upgrade brings the roles up to date.
No default privileges are set: a table a later version adds is granted explicitly, to the
roles that need it, when the grants are re-run.

Every statement is composed with :mod:`psycopg.sql`; role names are validated first and
always quoted, never spliced.
"""

from __future__ import annotations

import textwrap
import unicodedata
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from . import schema as schema_module
from . import validation
from .errors import (
    InvalidArgumentError,
    JobmonPermissionError,
    SchemaError,
    SchemaNotInstalledError,
)

DEFAULT_WRITER = "jobmon_writer"
DEFAULT_MONITOR = "jobmon_monitor"
DEFAULT_ADMIN = "jobmon_admin"

_MAX_IDENTIFIER_BYTES = 63
_PRIVILEGE_NOT_GRANTED = "01007"  # GRANT by a non-owner: a warning, not an error
# "public" means PUBLIC in GRANT even when quoted (it would grant to every role), "none" is
# refused by CREATE ROLE, and the current_* keywords would only confuse.
_RESERVED = {"public", "none", "current_user", "session_user", "current_role"}

_LOG_TABLES = ("job_log", "job_detail")
_ALL_TABLES = ("job_log", "job_detail", "job_check_log", "job_check_config", "job_status_text")
_READ_ONLY = ("job_alert_nagios", schema_module.MIGRATIONS_TABLE)
_ALERT_STATE = ("job_alert_state",)  # version 7: what the notifiers last heard
_SEQUENCES = ("job_log_job_id_seq", "job_detail_step_id_seq")
_RUN_KEY_FUNCTIONS = (
    ("add_run_job", "text, text, text, integer"),
    ("find_or_add_run_job", "text, text, text, integer"),  # version 8
    ("add_run_step", "bigint, text, text"),
)
_CHECK_FUNCTIONS = (
    ("check_job_status", ""),
    ("check_job_status", "interval"),
    ("check_job_summary", ""),
    ("check_job_summary", "interval"),
    ("check_job_durations", ""),  # version 10: runs too long
)


@dataclass(frozen=True)
class Grant:
    """``GRANT <privileges> [(columns)] ON <kind> <objects> TO <role>``, and why."""

    privileges: str  # a constant of this module, e.g. "SELECT, INSERT"
    kind: str  # SCHEMA, TABLE, SEQUENCE or FUNCTION
    objects: tuple[str | tuple[str, str], ...]  # functions: (name, argument types)
    why: str
    columns: tuple[str, ...] = ()

    def statement(self, schema: str, role: str) -> sql.Composed:
        if self.kind == "SCHEMA":
            targets: list[sql.Composable] = [sql.Identifier(schema)]
        else:
            targets = [_target(schema, obj) for obj in self.objects]
        privileges: sql.Composable = sql.SQL(self.privileges)
        if self.columns:
            privileges = sql.SQL("{} ({})").format(
                privileges, sql.SQL(", ").join(map(sql.Identifier, self.columns))
            )
        return sql.SQL("GRANT {} ON {} {} TO {}").format(
            privileges, sql.SQL(self.kind), sql.SQL(", ").join(targets), sql.Identifier(role)
        )


def _target(schema: str, obj: str | tuple[str, str]) -> sql.Composable:
    """A table or sequence by its name; a function by its name and argument types."""
    if isinstance(obj, tuple):
        name, arguments = obj
        return sql.SQL("{}({})").format(sql.Identifier(schema, name), sql.SQL(arguments))
    return sql.Identifier(schema, obj)


_SCHEMA_USAGE = Grant("USAGE", "SCHEMA", (), "look up the objects of the schema")
_VERSION = Grant(
    "SELECT",
    "TABLE",
    (schema_module.MIGRATIONS_TABLE,),
    "schema_version(), the Airflow connection test",
)

WRITER_GRANTS: tuple[Grant, ...] = (
    _SCHEMA_USAGE,
    _VERSION,
    Grant("SELECT", "TABLE", ("job_status_text",), "the status texts close_job/fail_job set"),
    Grant(
        "SELECT, INSERT",
        "TABLE",
        _LOG_TABLES,
        "add_job/add_step; run and step keys look their row up; finishing a job and the "
        "buffered mode read their rows back; JobmonSqlOperator reads its failed step",
    ),
    Grant(
        "UPDATE",
        "TABLE",
        ("job_log",),
        "close_job/fail_job/cancel_job: a run's name, owner and start stay as logged",
        columns=("end_time", "status"),
    ),
    Grant(
        "UPDATE",
        "TABLE",
        ("job_detail",),
        "update_step: a step's job, action and start stay as logged",
        columns=("end_time", "elapsed_time", "status", "message"),
    ),
    Grant("USAGE", "SEQUENCE", _SEQUENCES, "nextval(): ids are reserved before each insert"),
    Grant("EXECUTE", "FUNCTION", _RUN_KEY_FUNCTIONS, "add_job(run_key=), add_step(step_key=)"),
)
"""No DELETE or TRUNCATE anywhere, nothing on job_check_config or job_check_log: the
monitoring triggers fired by a finish run as their owner."""

MONITOR_GRANTS: tuple[Grant, ...] = (
    _SCHEMA_USAGE,
    Grant(
        "SELECT",
        "TABLE",
        (*_ALL_TABLES, *_READ_ONLY),
        "check_job_status, list_checks, the show_* reports, schema_version()",
    ),
    Grant("EXECUTE", "FUNCTION", _CHECK_FUNCTIONS, "the checks, as SQL (check_postgres, Grafana)"),
    Grant(
        "SELECT, INSERT, UPDATE, DELETE",
        "TABLE",
        _ALERT_STATE,
        "check_job_status(shared_state=True), jobmon check --notify: the levels notified",
    ),
)
"""Reads the log: no INSERT, UPDATE or DELETE on it, no sequence, no function that writes.
The one table it writes is the checkers' own memory of what the notifiers last heard."""

ADMIN_GRANTS: tuple[Grant, ...] = (
    _SCHEMA_USAGE,
    Grant(
        "SELECT, INSERT, UPDATE, DELETE",
        "TABLE",
        (*_ALL_TABLES, *_ALERT_STATE),
        "configure_check/remove_check, status texts, job_log_clear (which logs itself), "
        "clearing alerts by hand, and all the writer and the monitor do",
    ),
    Grant("SELECT", "TABLE", _READ_ONLY, "the Nagios view, schema_version()"),
    Grant(
        "USAGE, SELECT, UPDATE",
        "SEQUENCE",
        _SEQUENCES,
        "nextval(), and setval() to repair a sequence left behind its table",
    ),
    Grant("EXECUTE", "FUNCTION", _RUN_KEY_FUNCTIONS + _CHECK_FUNCTIONS, "all the functions"),
)
"""Full DML, but no TRUNCATE (it skips the triggers), no DDL and no ownership."""


@dataclass(frozen=True)
class Roles:
    """The role names (None: leave that role out) and the optional built-in roles.

    ``read_all_stats`` grants ``pg_read_all_stats`` to the monitor and the admin: without it
    they see only the state of sessions of their own role in ``pg_stat_activity``, so the
    RUNNING/BLOCKED relabelling and ``show_running`` cannot tell a job's session from a later
    one that reused its pid (the pid alone decides, as in pg_jobmon). ``signal_backends``
    grants ``pg_signal_backend`` to the admin, so ``cancel_job`` can cancel the session of a
    job run by another role (it needs ``read_all_stats`` too, to recognise the session).
    Granting either needs a superuser (or ADMIN OPTION on them).
    """

    writer: str | None = DEFAULT_WRITER
    monitor: str | None = DEFAULT_MONITOR
    admin: str | None = DEFAULT_ADMIN
    read_all_stats: bool = False
    signal_backends: bool = False

    def __post_init__(self) -> None:
        for what in ("writer", "monitor", "admin"):
            value = getattr(self, what)
            if value is not None:  # None: that role is left out
                role_name(value, f"{what} role")
        if self.writer is None and self.monitor is None and self.admin is None:
            raise InvalidArgumentError(
                "no role to grant: name at least one of writer, monitor, admin"
            )
        for flag in ("read_all_stats", "signal_backends"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidArgumentError(f"{flag} must be True or False")
        if self.signal_backends and self.admin is None:
            raise InvalidArgumentError("signal_backends is granted to the admin role: name one")
        if self.read_all_stats and self.monitor is None and self.admin is None:
            raise InvalidArgumentError(
                "read_all_stats is granted to the monitor and admin roles: name one"
            )

    def named(self) -> list[tuple[str, str, tuple[Grant, ...]]]:
        """(kind, name, grants) of each role asked for, writer first."""
        found = [
            ("writer", self.writer, WRITER_GRANTS),
            ("monitor", self.monitor, MONITOR_GRANTS),
            ("admin", self.admin, ADMIN_GRANTS),
        ]
        return [(kind, name, grants) for kind, name, grants in found if name is not None]

    def names(self) -> list[str]:
        """The distinct role names, in order."""
        return list(dict.fromkeys(name for _, name, _ in self.named()))


def role_name(value: object, what: str = "role") -> str:
    """Check a role name: text PostgreSQL stores as given (not truncated), usable in GRANT."""
    name = validation.text(value, what, allow_empty=False)
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise InvalidArgumentError(
            f"{what} {name!r} is longer than PostgreSQL's {_MAX_IDENTIFIER_BYTES}-byte limit; "
            "PostgreSQL would truncate it: choose a shorter name"
        )
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidArgumentError(f"{what} {name!r} contains control characters: choose another")
    if name.lower().startswith("pg_"):
        raise InvalidArgumentError(
            f"{what} {name!r} starts with pg_, which PostgreSQL reserves for its own roles"
        )
    if name.lower() in _RESERVED:
        raise InvalidArgumentError(
            f"{what} {name!r} is a reserved word in role names (PUBLIC would mean every "
            "role, even quoted): choose another name, such as jobmon_writer"
        )
    return name


def grant_statements(schema: str, roles: Roles) -> list[sql.Composed]:
    """The GRANT statements of ``roles`` on ``schema`` (the roles must exist)."""
    statements = [
        grant.statement(schema, name) for _, name, grants in roles.named() for grant in grants
    ]
    statements.extend(_builtin_grants(roles))
    return statements


def _builtin_grants(roles: Roles) -> list[sql.Composed]:
    wanted: list[tuple[str, str]] = []
    if roles.read_all_stats:
        wanted += [("pg_read_all_stats", name) for name in (roles.monitor, roles.admin) if name]
    if roles.signal_backends and roles.admin:
        wanted.append(("pg_signal_backend", roles.admin))
    return [
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(builtin), sql.Identifier(name))
        for builtin, name in dict.fromkeys(wanted)
    ]


def create_statements(
    names: list[str], context: psycopg.Connection | None = None
) -> list[sql.Composed]:
    """``CREATE ROLE ... NOLOGIN`` for each name that is not a role yet, as a DO block.

    An existing role is left as it is, and needs no CREATEROLE, so the owner of the schema
    can refresh the grants of roles a DBA made; a role created at the same moment by
    another session counts as existing."""
    statements = []
    for name in names:
        body = sql.SQL(
            "BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name})"
            " THEN CREATE ROLE {role} NOLOGIN; END IF;"
            " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END"
        ).format(name=sql.Literal(name), role=sql.Identifier(name))
        statements.append(sql.SQL("DO {}").format(sql.Literal(body.as_string(context))))
    return statements


_NOT_OWNER = (
    "pg-jobmon: run the role grants as the owner of the jobmon objects (the role that ran "
    "jobmon install) or as a superuser; anyone else's GRANT grants nothing"
)


def owner_check(schema: str, context: psycopg.Connection | None = None) -> sql.Composed:
    """A DO block that fails unless the current role acts as the owner of the schema and of
    its tables: anyone else's GRANT only warns ``no privileges were granted`` and succeeds,
    which would leave the roles silently without their privileges."""
    table = sql.Literal(sql.Identifier(schema, "job_log").as_string(context))
    body = sql.SQL(
        "BEGIN IF NOT (pg_catalog.pg_has_role((SELECT nspowner FROM pg_catalog.pg_namespace"
        " WHERE nspname = {schema}), 'USAGE') AND pg_catalog.pg_has_role((SELECT relowner"
        " FROM pg_catalog.pg_class WHERE oid = {table}::regclass), 'USAGE'))"
        " THEN RAISE EXCEPTION USING MESSAGE = {message}, ERRCODE = 'insufficient_privilege';"
        " END IF; END"
    ).format(schema=sql.Literal(schema), table=table, message=sql.Literal(_NOT_OWNER))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(context)))


_HEADER = """\
-- pg-jobmon: least-privilege roles for the jobmon schema (see jobmon_core/roles.py).
-- Run it as the role that ran `jobmon install` (the owner of the jobmon objects) or as a
-- superuser; creating a role that does not exist yet needs CREATEROLE. It is idempotent:
-- existing roles are reused as they are (NOLOGIN is only for roles it creates), and grants
-- are added, never taken away. Run it again after every upgrade of the schema, so that the
-- roles get the objects the upgrade added.
"""

_FOOTER = """\
-- Give the roles to login roles, e.g. GRANT jobmon_writer TO etl_jobmon;
-- Timeouts: pg-jobmon sends lock_timeout (5 s) and statement_timeout (15 s) when it
-- connects, but a pooler such as PgBouncer does not hand those options to the server, and
-- settings of these NOLOGIN roles never reach their members' sessions. Behind a pooler, set
-- them on the login role of the logging connection, if that role runs nothing else (they
-- apply to every session of the role, long ETL statements included):
--   ALTER ROLE etl_jobmon SET lock_timeout = '5s';
--   ALTER ROLE etl_jobmon SET statement_timeout = '15s';
"""


def script(schema: str, roles: Roles) -> str:
    """The whole SQL script, one transaction, with comments: what ``create_roles`` runs."""
    lines = [_HEADER, "BEGIN;", "-- stop here unless run by the owner of the jobmon objects"]
    lines.append(owner_check(schema).as_string(None) + ";")
    lines += [s.as_string(None) + ";" for s in create_statements(roles.names())]
    for kind, name, grants in roles.named():
        lines.append("")
        lines.append(
            sql.SQL("-- {}: {}").format(sql.SQL(kind), sql.Identifier(name)).as_string(None)
        )
        for grant in grants:
            lines += textwrap.wrap(grant.why, 96, initial_indent="--   ", subsequent_indent="--   ")
            lines.append(grant.statement(schema, name).as_string(None) + ";")
    builtins = _builtin_grants(roles)
    if builtins:
        lines += [
            "",
            "-- built-in roles: see other roles' sessions (pg_read_all_stats), cancel them",
        ]
        lines += [s.as_string(None) + ";" for s in builtins]
    lines += ["COMMIT;", "", _FOOTER]
    return "\n".join(lines)


def create_roles(conn: psycopg.Connection, schema: str, roles: Roles) -> list[str]:
    """Create the missing roles and grant them their privileges, in one transaction on
    ``conn`` (autocommit, not in a transaction). Return the names of the roles created now.

    The schema must be installed at the newest version: the grants name its objects.
    """
    newest = len(schema_module.load_migrations())
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [schema_module.INSTALL_LOCK_KEY])
        version = schema_module.installed_version(conn, schema)
        if version == 0:
            raise SchemaNotInstalledError(
                f"pg-jobmon is not installed in schema {schema!r}: run Jobmon.install() or "
                "`jobmon install` first (`jobmon install --create-roles` does both)"
            )
        if version < newest:
            raise SchemaError(
                f"schema {schema!r} is at version {version}, the grants are for version "
                f"{newest}: run Jobmon.install() first (`jobmon install --create-roles` does both)"
            )
        names = roles.names()
        existing = {
            row[0]
            for row in conn.execute(
                "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", [names]
            )
        }
        statements = [owner_check(schema, conn), *create_statements(names, conn)]
        statements += grant_statements(schema, roles)
        ignored: list[str] = []

        def warned(notice: psycopg.errors.Diagnostic) -> None:
            if notice.sqlstate == _PRIVILEGE_NOT_GRANTED:
                ignored.append(notice.message_primary or "")

        conn.add_notice_handler(warned)
        try:
            for statement in statements:
                conn.execute(statement)
                if ignored:  # objects owned by another role than the schema and job_log
                    raise JobmonPermissionError(
                        f"cannot grant the jobmon roles their privileges: {ignored[0]}; "
                        f"{_NOT_OWNER}",
                        sqlstate=_PRIVILEGE_NOT_GRANTED,
                    )
        except pg_errors.InsufficientPrivilege as exc:
            raise JobmonPermissionError(
                f"cannot create or grant the jobmon roles: {exc.diag.message_primary}. Creating "
                "roles needs CREATEROLE; granting needs the owner of the jobmon objects (the "
                "role that ran install()) or a superuser; the built-in pg_read_all_stats and "
                "pg_signal_backend need a superuser. Or have a DBA run the SQL printed by "
                "`jobmon install --print-grants`",
                sqlstate=exc.sqlstate,
            ) from None
        finally:
            conn.remove_notice_handler(warned)
    return [name for name in names if name not in existing]
