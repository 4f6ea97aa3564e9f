"""Least privilege: the writer, monitor and admin roles, each used through a real login.

Roles are cluster-wide, so every test names its roles uniquely and drops them (and the
privileges they hold in the test database) at the end, whatever happened.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobmon_core import (
    InvalidArgumentError,
    Jobmon,
    JobmonPermissionError,
    SchemaNotInstalledError,
)
from jobmon_core.cli import main

JOBMON = str(Path(sys.executable).with_name("jobmon"))

# What each role holds on the jobmon schema's objects, as aclexplode() lists it: table
# privileges as "table: PRIV", column privileges as "table.column: PRIV".
WRITER = {
    "jobmon_schema_migrations: SELECT",
    "job_status_text: SELECT",
    "job_log: SELECT",
    "job_log: INSERT",
    "job_log.end_time: UPDATE",
    "job_log.status: UPDATE",
    "job_detail: SELECT",
    "job_detail: INSERT",
    "job_detail.end_time: UPDATE",
    "job_detail.elapsed_time: UPDATE",
    "job_detail.status: UPDATE",
    "job_detail.message: UPDATE",
    "job_log_job_id_seq: USAGE",
    "job_detail_step_id_seq: USAGE",
    "add_run_job: EXECUTE",
    "find_or_add_run_job: EXECUTE",
    "add_run_step: EXECUTE",
    "schema: USAGE",
}
MONITOR = {
    *(
        f"{t}: SELECT"
        for t in (
            "job_log",
            "job_detail",
            "job_check_log",
            "job_check_config",
            "job_status_text",
            "job_alert_nagios",
            "jobmon_schema_migrations",
        )
    ),
    "check_job_status: EXECUTE",
    "check_job_summary: EXECUTE",
    "check_job_durations: EXECUTE",
    "schema: USAGE",
    # the one table the monitor writes: the levels the notifiers last heard
    *(f"job_alert_state: {p}" for p in ("SELECT", "INSERT", "UPDATE", "DELETE")),
}
ADMIN = {
    *(
        f"{t}: {p}"
        for t in (
            "job_log",
            "job_detail",
            "job_check_log",
            "job_check_config",
            "job_status_text",
            "job_alert_state",
        )
        for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
    ),
    "job_alert_nagios: SELECT",
    "jobmon_schema_migrations: SELECT",
    *(
        f"{s}: {p}"
        for s in ("job_log_job_id_seq", "job_detail_step_id_seq")
        for p in ("USAGE", "SELECT", "UPDATE")
    ),
    *(
        f"{f}: EXECUTE"
        for f in (
            "add_run_job",
            "find_or_add_run_job",
            "add_run_step",
            "check_job_status",
            "check_job_summary",
            "check_job_durations",
        )
    ),
    "schema: USAGE",
}


def privileges(conn: psycopg.Connection, schema: str, role: str) -> set[str]:
    """Every privilege ``role`` holds directly on the objects of ``schema``."""
    found = conn.execute(
        """
        SELECT c.relname || ': ' || a.privilege_type
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relnamespace = %(schema)s::regnamespace AND a.grantee = %(role)s::regrole
        UNION
        SELECT c.relname || '.' || att.attname || ': ' || a.privilege_type
          FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid,
               aclexplode(att.attacl) a
         WHERE c.relnamespace = %(schema)s::regnamespace AND a.grantee = %(role)s::regrole
        UNION
        SELECT p.proname || ': ' || a.privilege_type
          FROM pg_proc p, aclexplode(p.proacl) a
         WHERE p.pronamespace = %(schema)s::regnamespace AND a.grantee = %(role)s::regrole
        UNION
        SELECT 'schema: ' || a.privilege_type
          FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE n.oid = %(schema)s::regnamespace AND a.grantee = %(role)s::regrole
        """,
        {
            "schema": sql.Identifier(schema).as_string(conn),
            "role": sql.Identifier(role).as_string(conn),
        },
    ).fetchall()
    return {row[0] for row in found}


@dataclass
class Cast:
    """The roles of one test: the three group roles, login roles, a Jobmon per login."""

    dsn: str
    schema: str
    prefix: str
    made: list[str] = field(default_factory=list)  # every role to drop, logins first
    jobmons: list[Jobmon] = field(default_factory=list)
    # set by the ``roles`` fixture: the Jobmon and connection string of a login in each role
    w: Jobmon = field(init=False)
    m: Jobmon = field(init=False)
    a: Jobmon = field(init=False)
    w_dsn: str = field(init=False)
    m_dsn: str = field(init=False)
    a_dsn: str = field(init=False)

    def name(self, what: str) -> str:
        return f"{self.prefix}_{what}"

    @property
    def writer(self) -> str:
        return self.name("writer")

    @property
    def monitor(self) -> str:
        return self.name("monitor")

    @property
    def admin(self) -> str:
        return self.name("admin")

    def create(self, jm: Jobmon, **options: bool) -> list[str]:
        self.made[:0] = [self.writer, self.monitor, self.admin]
        return jm.create_roles(self.writer, self.monitor, self.admin, **options)

    def login(self, conn: psycopg.Connection, user: str, member_of: str | None = None) -> str:
        """Create the login role ``user`` with a password (in ``member_of``); return its
        connection string."""
        password = secrets.token_hex(12)
        self.made.insert(0, user)
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
        if member_of is not None:
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(user))
            )
        params = conninfo_to_dict(self.dsn)
        params.update(user=user, password=password)
        return make_conninfo("", **params)

    def jobmon(self, dsn: str, **options: Any) -> Jobmon:
        jobmon = Jobmon(dsn, schema=self.schema, **options)
        self.jobmons.append(jobmon)
        return jobmon


@pytest.fixture
def cast(dsn: str, schema_name: str, admin: psycopg.Connection) -> Iterator[Cast]:
    found = Cast(dsn, schema_name, f"jmr_{os.getpid()}_{secrets.token_hex(3)}")
    yield found
    for jobmon in found.jobmons:
        jobmon.close()
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(%s)",
        [found.made],
    )
    for role in dict.fromkeys(found.made):
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def roles(cast: Cast, jm: Jobmon, admin: psycopg.Connection) -> Cast:
    """The three roles created on the installed schema, and a login in each."""
    cast.create(jm)
    cast.w_dsn = cast.login(admin, cast.name("etl"), cast.writer)
    cast.m_dsn = cast.login(admin, cast.name("nagios"), cast.monitor)
    cast.a_dsn = cast.login(admin, cast.name("dba"), cast.admin)
    cast.w = cast.jobmon(cast.w_dsn)
    cast.m = cast.jobmon(cast.m_dsn)
    cast.a = cast.jobmon(cast.a_dsn)
    return cast


def refused(dsn: str, schema: str, statement: str) -> bool:
    """Whether ``statement`` (unqualified names, in ``schema``) is refused for lack of a
    privilege, on a connection of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        try:
            conn.execute(statement)  # type: ignore[arg-type]
        except pg_errors.InsufficientPrivilege:
            return True
    return False


# -- the migration --------------------------------------------------------------------------


def test_the_monitoring_triggers_run_as_their_owner_on_a_pinned_search_path(admin, jm):
    found = admin.execute(
        "SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner),"
        "       has_function_privilege('public', p.oid, 'EXECUTE')"
        "  FROM pg_proc p WHERE p.pronamespace = %s::regnamespace"
        "   AND p.prorettype = 'trigger'::regtype"
        " ORDER BY 1",
        [sql.Identifier(jm.schema).as_string(admin)],
    ).fetchall()
    (installer,) = admin.execute("SELECT current_user").fetchone()
    pinned = [f"search_path={jm.schema}, pg_temp"]
    assert found == [
        ("job_check_log_escalate_trig", True, pinned, installer, False),
        ("job_monitor", True, pinned, installer, False),
    ]


# -- what each role holds -------------------------------------------------------------------


def test_each_role_holds_exactly_its_grants(roles, admin):
    assert privileges(admin, roles.schema, roles.writer) == WRITER
    assert privileges(admin, roles.schema, roles.monitor) == MONITOR
    assert privileges(admin, roles.schema, roles.admin) == ADMIN
    attributes = admin.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname = ANY(%s) ORDER BY 1",
        [[roles.writer, roles.monitor, roles.admin]],
    ).fetchall()
    assert [a[1:] for a in attributes] == [(False, False, False, False)] * 3
    memberships = admin.execute(
        "SELECT count(*) FROM pg_auth_members WHERE member = ANY(%s::regrole[])",
        [[roles.writer, roles.monitor, roles.admin]],
    ).fetchone()
    assert memberships == (0,)  # the admin has direct grants, no membership


# -- the writer -----------------------------------------------------------------------------


def test_the_writer_logs_whole_jobs_and_the_triggers_keep_the_monitoring_state(roles, rows):
    writer = roles.w
    with psycopg.connect(roles.w_dsn) as work:
        with writer.job("nightly load", conn=work) as job, job.step("copy rows") as step:
            step.message = "42 rows"
        with pytest.raises(ValueError, match="boom"):  # noqa: SIM117 (the order matters)
            with writer.job("nightly load", conn=work) as job, job.step("analyze"):
                raise ValueError("boom")
    (ok_run, failed_run) = rows("job_log")
    assert (ok_run["owner"], ok_run["status"]) == (roles.name("etl"), "OK")
    assert failed_run["status"] == "CRITICAL"
    assert [r["job_name"] for r in rows("job_check_log")] == ["NIGHTLY LOAD"]

    job_id = writer.add_job("plain calls")
    step_id = writer.add_step(job_id, "one")
    writer.update_step(step_id, "RUNNING", "half way")
    writer.update_step(step_id, "OK", "done")
    writer.fail_job(job_id, 2)
    assert [r["alert_code"] for r in rows("job_check_log", "job_name = 'PLAIN CALLS'")] == [2]
    again = writer.add_job("plain calls")
    writer.close_job(again)  # a success wipes the name's failures, through the trigger
    assert rows("job_check_log", "job_name = 'PLAIN CALLS'") == []

    keyed = writer.add_job("keyed", run_key="airflow:dag/run1")
    assert writer.add_job("keyed", run_key="airflow:dag/run1") == keyed
    task = writer.add_step(keyed, "task", step_key="task#1")
    assert writer.add_step(keyed, "task", step_key="task#1") == task
    writer.close_job(keyed)

    orphan = writer.add_job("orphan")
    assert writer.cancel_job(orphan) is False  # its own session: never signalled
    assert rows("job_log", "job_id = %s", [orphan])[0]["status"] == "CRITICAL"

    with psycopg.connect(roles.w_dsn) as work:
        assert writer.sql_job("sql job", "SELECT 1", conn=work).startswith("Job logged")


def test_the_writer_escalates_through_config_it_cannot_read(roles, rows):
    roles.a.configure_check(
        "escalating", warn=timedelta(hours=1), error=timedelta(hours=2), escalate=2
    )
    for _ in range(2):
        roles.w.fail_job(roles.w.add_job("escalating"), 2)
    assert [r["status"] for r in rows("job_log")] == ["WARNING", "ESCALATED"]
    assert [r["action"] for r in rows("job_detail")] == ["ALERT ESCALATION"]
    assert [r["alert_code"] for r in rows("job_check_log")] == [2, 3]


def test_the_buffered_writer_works_with_the_writer_role(roles, rows):
    buffered = roles.jobmon(roles.w_dsn, buffered=True)
    job_id = buffered.add_job("buffered")
    steps = [buffered.add_step(job_id, f"step {i}") for i in range(3)]
    buffered.update_step(steps[0], "OK", "first")
    buffered.flush()
    buffered.update_step(steps[1], "OK", "second")  # a step already written: an update
    buffered.close_job(job_id)
    assert [(r["action"], r["status"]) for r in rows("job_detail")] == [
        ("step 0", "OK"),
        ("step 1", "OK"),
        ("step 2", None),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM job_log",
        "DELETE FROM job_detail",
        "TRUNCATE job_log CASCADE",
        "UPDATE job_log SET job_name = 'RENAMED'",
        "UPDATE job_log SET owner = 'someone else'",
        "UPDATE job_detail SET action = 'rewritten'",
        "SELECT * FROM job_check_config",
        "INSERT INTO job_check_config (job_name, warn_threshold, error_threshold)"
        " VALUES ('X', '1h', '2h')",
        "UPDATE job_check_config SET active = false",
        "SELECT * FROM job_check_log",
        "INSERT INTO job_check_log (job_id, job_name) VALUES (1, 'X')",
        "DELETE FROM job_check_log",
        "SELECT * FROM job_alert_state",
        "INSERT INTO job_alert_state (job_name, alert_code) VALUES ('X', 3)",
        "INSERT INTO job_status_text VALUES (9, 'NINE')",
        "UPDATE job_status_text SET alert_text = 'FINE'",
        "SELECT setval('job_log_job_id_seq', 1)",
        "SELECT * FROM job_alert_nagios",
    ],
)
def test_the_writer_cannot(roles, statement):
    assert refused(roles.w_dsn, roles.schema, statement)


def test_the_writer_cannot_configure_check_or_purge_through_the_api(roles):
    job_id = roles.w.add_job("some job")
    roles.w.close_job(job_id)
    with pytest.raises(JobmonPermissionError, match="permission denied"):
        roles.w.configure_check("some job", warn=timedelta(hours=1), error=timedelta(hours=2))
    with pytest.raises(JobmonPermissionError):
        roles.w.list_checks()
    with pytest.raises(JobmonPermissionError):
        roles.w.remove_check("some job")
    with pytest.raises(JobmonPermissionError):
        roles.w.check_job_status()
    with pytest.raises(JobmonPermissionError):
        roles.w.job_log_clear(timedelta(0))
    assert len(roles.m.show_job("some job")) == 1  # nothing was deleted


# -- the monitor ----------------------------------------------------------------------------


def test_the_monitor_checks_and_reports(roles, jm, dsn):
    jm.configure_check("late job", warn=timedelta(hours=1), error=timedelta(hours=2))
    for _ in range(3):
        failed = jm.add_job("broken job")
        jm.update_step(jm.add_step(failed, "the step"), "CRITICAL", "it broke")
        jm.fail_job(failed)
    with psycopg.connect(dsn) as work:
        running = jm.add_job("running job", conn=work)  # another role's live session
        monitor = roles.m
        alerts = monitor.check_job_status()
        assert [(a.alert_code, a.alert_status, a.job_name) for a in alerts] == [
            (3, "FAILED_RUN", "BROKEN JOB"),
            (3, "MISSING", "LATE JOB"),
        ]
        assert monitor.check_summary().alert_code == 3
        assert [c.job_name for c in monitor.list_checks()] == ["LATE JOB"]
        assert len(monitor.show_job("broken job")) == 3
        assert len(monitor.show_job_like("^BROKEN")) == 3
        assert len(monitor.show_job_status("CRITICAL", name="broken job")) == 3
        assert monitor.show_detail(failed)[0].message == "it broke"
        assert len(monitor.show_detail("broken job", 2)) == 2
        assert [j.job_id for j in monitor.show_running()] == [running]
        assert monitor.schema_version() == jm.schema_version()
    with psycopg.connect(roles.m_dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(roles.schema)))
        line = conn.execute(
            "SELECT r.error_text || c.alert_text FROM check_job_summary('3 days') c"
            " JOIN job_alert_nagios r ON c.alert_code = r.error_code"
        ).fetchone()
        assert line[0].startswith("CRITICAL(BROKEN JOB: 3 consecutive CRITICAL runs")

    for args, code, expected in [
        (["check"], 2, "JOBMON CRITICAL"),
        (["jobs", "--name", "broken job"], 0, "BROKEN JOB"),
        (["steps", "broken job"], 0, "it broke"),
        (["config", "list"], 0, "LATE JOB"),
    ]:
        done = subprocess.run(
            [JOBMON, "--dsn", roles.m_dsn, "--schema", roles.schema, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (code, ""), args
        assert expected in done.stdout


@pytest.mark.parametrize(
    "statement",
    [
        *(
            f"DELETE FROM {t}"
            for t in (
                "job_log",
                "job_detail",
                "job_check_log",
                "job_check_config",
                "job_status_text",
            )
        ),
        *(
            f"UPDATE {t} SET job_name = 'X'"
            for t in ("job_log", "job_check_log", "job_check_config")
        ),
        "UPDATE job_detail SET message = 'X'",
        "UPDATE job_status_text SET alert_text = 'X'",
        "INSERT INTO job_log (owner, job_name, start_time, pid) VALUES ('me', 'X', now(), 1)",
        "INSERT INTO job_detail (job_id, action, start_time) VALUES (1, 'X', now())",
        "INSERT INTO job_check_log (job_id, job_name) VALUES (1, 'X')",
        "INSERT INTO job_check_config (job_name, warn_threshold, error_threshold)"
        " VALUES ('X', '1h', '2h')",
        "INSERT INTO job_status_text VALUES (9, 'NINE')",
        "SELECT nextval('job_log_job_id_seq')",
        "SELECT add_run_job('X', 'key', NULL, NULL)",
        "SELECT find_or_add_run_job('X', 'key', NULL, NULL)",
        "TRUNCATE job_check_log",
        "INSERT INTO jobmon_schema_migrations (version, name, checksum) VALUES (99, 'x', 'x')",
    ],
)
def test_the_monitor_cannot(roles, statement):
    assert refused(roles.m_dsn, roles.schema, statement)


def test_the_monitor_keeps_the_shared_alert_state(roles, jm):
    from jobmon_core.plugins import hookimpl, new_plugin_manager

    heard: list[list[str | None]] = []

    class Notifier:
        @hookimpl
        def jobmon_alerts_found(self, changes):
            heard.append([c.job_name for c in changes])

    for _ in range(3):
        jm.fail_job(jm.add_job("broken job"))
    manager = new_plugin_manager(load_entry_points=False)
    manager.register(Notifier())
    for _ in range(2):  # two processes, one after the other
        monitor = roles.jobmon(roles.m_dsn, plugins=manager)
        monitor.check_job_status(shared_state=True)
        monitor.close()
    assert heard == [["BROKEN JOB"], []]


def test_the_monitor_cannot_write_through_the_api(roles, jm):
    jm.close_job(jm.add_job("a job"))
    with pytest.raises(JobmonPermissionError):
        roles.m.add_job("a job")
    with pytest.raises(JobmonPermissionError):
        roles.m.add_job("a job", run_key="k")
    with pytest.raises(JobmonPermissionError):
        roles.m.configure_check("a job", warn=timedelta(hours=1), error=timedelta(hours=2))
    with pytest.raises(JobmonPermissionError):
        roles.m.job_log_clear(timedelta(0))
    assert len(roles.m.show_job("a job")) == 1


# -- the admin ------------------------------------------------------------------------------


def test_the_admin_configures_edits_texts_and_purges(roles, rows):
    admin = roles.a
    saved = admin.configure_check("nightly", warn=timedelta(hours=1), error=timedelta(hours=2))
    assert saved.job_name == "NIGHTLY"
    assert [c.job_name for c in admin.list_checks()] == ["NIGHTLY"]
    assert admin.remove_check("nightly") is True
    with psycopg.connect(roles.a_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(roles.schema)))
        conn.execute("INSERT INTO job_status_text VALUES (4, 'PAGE SOMEONE')")
        conn.execute("SELECT setval('job_log_job_id_seq', 1000)")
    for _ in range(3):
        roles.w.fail_job(roles.w.add_job("old job"), 4)
    with psycopg.connect(roles.a_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(roles.schema)))
        conn.execute("DELETE FROM job_check_log WHERE job_name = 'OLD JOB'")  # acknowledge
    assert admin.job_log_clear(timedelta(0)) == 3
    (purge,) = rows("job_log")
    assert purge["job_id"] > 1000
    assert purge["job_name"].startswith("PURGING PG_JOBMON JOB LOGS OLDER THAN")
    assert admin.check_job_status()[0].alert_status == "OK"


# -- creating the roles ---------------------------------------------------------------------


def test_create_roles_is_idempotent_and_reuses_existing_roles(cast, jm, admin):
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(cast.monitor)))
    assert cast.create(jm) == [cast.writer, cast.admin]
    assert cast.create(jm) == []
    assert privileges(admin, cast.schema, cast.writer) == WRITER
    assert privileges(admin, cast.schema, cast.monitor) == MONITOR
    (can_login,) = admin.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [cast.monitor]
    ).fetchone()
    assert can_login is True  # reused as it was


def test_create_roles_at_the_same_moment_in_several_threads(cast, jm, admin):
    cast.made[:0] = [cast.writer, cast.monitor, cast.admin]
    created: list[list[str]] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            created.append(
                Jobmon(cast.dsn, schema=cast.schema).create_roles(
                    cast.writer, cast.monitor, cast.admin
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(name for names in created for name in names) == sorted(
        [cast.writer, cast.monitor, cast.admin]
    )


def test_only_the_roles_named_are_created(cast, jm, admin):
    cast.made[:0] = [cast.monitor]
    assert jm.create_roles(None, cast.monitor, None) == [cast.monitor]
    assert privileges(admin, cast.schema, cast.monitor) == MONITOR
    assert (
        admin.execute("SELECT FROM pg_roles WHERE rolname = %s", [cast.writer]).fetchone() is None
    )


def test_the_built_in_roles_are_opt_in(cast, jm, admin, dsn):
    cast.create(jm, read_all_stats=True, signal_backends=True)
    member_of = admin.execute(
        "SELECT r.rolname, b.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
        " JOIN pg_roles b ON b.oid = m.roleid WHERE r.rolname = ANY(%s) ORDER BY 1, 2",
        [[cast.writer, cast.monitor, cast.admin]],
    ).fetchall()
    assert member_of == [
        (cast.admin, "pg_read_all_stats"),
        (cast.admin, "pg_signal_backend"),
        (cast.monitor, "pg_read_all_stats"),
    ]
    # what it changes: the monitor sees when another role's session started
    monitor_dsn = cast.login(admin, cast.name("nagios"), cast.monitor)
    writer_dsn = cast.login(admin, cast.name("etl"), cast.writer)
    with psycopg.connect(dsn) as other, psycopg.connect(monitor_dsn) as monitor:
        query = "SELECT backend_start IS NOT NULL FROM pg_stat_activity WHERE pid = %s"
        assert monitor.execute(query, [other.info.backend_pid]).fetchone() == (True,)
    with psycopg.connect(dsn) as other, psycopg.connect(writer_dsn) as writer:
        assert writer.execute(query, [other.info.backend_pid]).fetchone() == (False,)


def test_create_roles_needs_the_newest_schema(dsn, schema_name):
    with pytest.raises(SchemaNotInstalledError, match="install"):
        Jobmon(dsn, schema=schema_name).create_roles("jmr_never_a", "jmr_never_b", "jmr_never_c")


def test_create_roles_without_the_rights_is_a_permission_error(roles):
    with pytest.raises(JobmonPermissionError, match=r"CREATEROLE.*--print-grants"):
        roles.w.create_roles(roles.name("x1"), None, None)  # a new role: needs CREATEROLE
    with pytest.raises(JobmonPermissionError, match="owner of the jobmon objects"):
        roles.a.create_roles(roles.writer, None, None)  # exists: the grants are refused


def test_a_non_superuser_owner_installs_and_refreshes_roles_a_dba_made(cast, admin):
    """The production set-up: a DBA makes the roles; the schema's owner (no superuser, no
    CREATEROLE) installs and grants; the triggers then run as that owner."""
    owner_dsn = cast.login(admin, cast.name("owner"))
    admin.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(admin.info.dbname), sql.Identifier(cast.name("owner"))
        )
    )
    cast.made[:0] = [cast.writer, cast.monitor, cast.admin]
    for role in (cast.writer, cast.monitor, cast.admin):
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    owner = cast.jobmon(owner_dsn)
    owner.install()
    assert owner.create_roles(cast.writer, cast.monitor, cast.admin) == []
    assert privileges(admin, cast.schema, cast.writer) == WRITER
    assert privileges(admin, cast.schema, cast.monitor) == MONITOR
    assert privileges(admin, cast.schema, cast.admin) == ADMIN
    owner.configure_check("owned", warn=timedelta(hours=1), error=timedelta(hours=2), escalate=2)
    writer = cast.jobmon(cast.login(admin, cast.name("etl"), cast.writer))
    for _ in range(2):
        writer.fail_job(writer.add_job("owned"), 2)
    monitor = cast.jobmon(cast.login(admin, cast.name("nagios"), cast.monitor))
    alerts = monitor.check_job_status()
    assert [(a.alert_code, a.job_name) for a in alerts] == [(3, "OWNED"), (2, "OWNED")]
    assert [s.action for s in monitor.show_detail("owned")] == ["ALERT ESCALATION"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("", None, None), "must not be empty"),
        (("public", None, None), "reserved word"),
        ((None, "PUBLIC", None), "reserved word"),
        ((None, None, "current_user"), "reserved word"),
        (("pg_monitor", None, None), "reserves"),
        (("x" * 64, None, None), "63-byte"),
        (("a\nb", None, None), "control characters"),
        ((5, None, None), "must be a string"),
        ((None, None, None), "at least one"),
    ],
)
def test_role_names_are_checked_before_anything_is_sent(names, message):
    jobmon = Jobmon("host=/nonexistent dbname=none")  # never connects
    with pytest.raises(InvalidArgumentError, match=message):
        jobmon.grant_statements(*names)
    with pytest.raises(InvalidArgumentError, match=message):
        jobmon.create_roles(*names)


def test_built_in_roles_need_a_role_to_go_to():
    jobmon = Jobmon("host=/nonexistent dbname=none")
    with pytest.raises(InvalidArgumentError, match="admin"):
        jobmon.grant_statements("w", "m", None, signal_backends=True)
    with pytest.raises(InvalidArgumentError, match="monitor"):
        jobmon.roles_script("w", None, None, read_all_stats=True)


def test_grant_statements_quote_every_name(admin):
    jobmon = Jobmon("host=/nonexistent dbname=none", schema='we"ird schema')
    statements = [s.as_string(admin) for s in jobmon.grant_statements('Etl "Writer"', None, None)]
    assert statements[0] == 'GRANT USAGE ON SCHEMA "we""ird schema" TO "Etl ""Writer"""'
    assert all(s.endswith(' TO "Etl ""Writer"""') for s in statements)


# -- the CLI --------------------------------------------------------------------------------


def test_print_grants_prints_a_script_that_runs_twice(cast, jm, admin, capsys):
    cast.made[:0] = [cast.writer, cast.monitor, cast.admin]
    args = ["--dsn", "host=/nonexistent", "--schema", cast.schema, "install", "--print-grants"]
    args += [
        "--writer-role",
        cast.writer,
        "--monitor-role",
        cast.monitor,
        "--admin-role",
        cast.admin,
    ]
    assert main(args) == 0  # touches no database: the DSN leads nowhere
    script = capsys.readouterr().out
    assert "ALTER ROLE etl_jobmon SET lock_timeout" in script
    for _ in range(2):
        admin.execute(script)
    assert privileges(admin, cast.schema, cast.writer) == WRITER
    assert privileges(admin, cast.schema, cast.monitor) == MONITOR
    assert privileges(admin, cast.schema, cast.admin) == ADMIN
    # anyone but the owner would GRANT nothing (a mere warning): the script stops instead
    etl_dsn = cast.login(admin, cast.name("etl"), cast.writer)
    with (
        psycopg.connect(etl_dsn, autocommit=True) as etl,
        pytest.raises(pg_errors.InsufficientPrivilege, match="owner of the jobmon objects"),
    ):
        etl.execute(script)


def test_install_create_roles(cast, jm, dsn, capsys):
    cast.made[:0] = [cast.writer, cast.admin]
    args = ["--dsn", dsn, "--schema", cast.schema, "install", "--create-roles"]
    args += ["--writer-role", cast.writer, "--monitor-role", "", "--admin-role", cast.admin]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"writer role {cast.writer!r}: created (NOLOGIN)" in out
    assert "monitor role" not in out
    assert main(args) == 0
    assert f"admin role {cast.admin!r}: exists, reused" in capsys.readouterr().out


def test_role_options_need_a_mode(dsn, schema_name, capsys):
    assert main(["--dsn", dsn, "--schema", schema_name, "install", "--writer-role", "w"]) == 2
    assert "--create-roles or --print-grants" in capsys.readouterr().err
    assert main(["--schema", schema_name, "install", "--print-grants", "--create-roles"]) == 2
