"""The :class:`Jobmon` facade: one object for install, the writer and the context managers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pluggy
import psycopg
from psycopg.sql import Composed, Identifier

from . import caller, roles, schema, sql_interface, validation
from .alert_memory import AlertMemory
from .alerts import Alert
from .buffer import StepBuffer
from .checker import CheckConfig, Checker, RunState
from .connection import LoggingConnection
from .context import STEP_FAILED, STEP_OK, Job, describe, log_quietly
from .errors import InvalidArgumentError, JobmonConnectionError, StatusTableError
from .plugins import PluginCaller, alert_state, diff_alerts, get_plugin_manager
from .reports import DEFAULT_BATCH, JobRecord, Reports, StepRecord
from .session import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, SessionSettings
from .target import (
    DEFAULT_APPLICATION_NAME,
    DEFAULT_CONNECT_TIMEOUT,
    ConnectionTarget,
    resolve_target,
)
from .translate import translate_error
from .writer import Writer

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "jobmon"
STATUS_TABLE = "job_status_text"
T = TypeVar("T")
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL silently truncates longer names: refuse them instead


def _identifier(value: object, what: str) -> str:
    name = validation.text(value, what, allow_empty=False)
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise InvalidArgumentError(
            f"{what} {name!r} is longer than PostgreSQL's {_MAX_IDENTIFIER_BYTES}-byte limit"
        )
    if "%" in name:  # psycopg reads a % anywhere in a statement that has parameters as one
        raise InvalidArgumentError(
            f"{what} {name!r} contains '%', which psycopg would take for a query parameter "
            "placeholder in every statement naming it; choose a name without '%'"
        )
    return name


class Jobmon:
    """Log jobs and steps non-transactionally into a pg_jobmon-compatible schema.

    ``dsn`` is a libpq connection string (URI or key=value); ``None`` means the
    ``JOBMON_DSN`` environment variable, else libpq's own defaults (``PGHOST``,
    ``PGDATABASE``...). ``schema`` names the jobmon schema; any name works.

    The object is cheap: nothing connects until the first call. One instance may be shared
    by all threads of a process, and survives ``fork()``.

    ``plugins`` is the pluggy manager whose plugins hear about jobs, steps and checks
    (default: the process-wide one, with the ``pg_jobmon`` entry points loaded).

    ``buffered=True`` writes steps in batches (every ``flush_interval`` seconds or
    ``max_buffer`` steps, and before any job-level write), an order of magnitude faster, at
    the price stated in :mod:`jobmon_core.buffer`: a process killed without exit handlers
    loses its unflushed steps. Durable (the default) writes every call before returning.

    ``lock_timeout`` and ``statement_timeout`` (seconds, or a ``timedelta``) bound the
    server-side waits of the logging session: a call blocked by a lock held elsewhere (the
    job's own open transaction included, which would otherwise wait forever: the deadlock
    detector cannot see a session waiting for its own client) raises
    :class:`~jobmon_core.errors.LockTimeoutError` after ``lock_timeout``, and any statement
    (checks, reports, ``job_log_clear`` batches share the session) raises
    :class:`~jobmon_core.errors.StatementTimeoutError` after ``statement_timeout``. Both
    are rolled back and may be retried. ``None`` or 0 leaves the server's setting (ALTER
    ROLE/DATABASE, postgresql.conf) in force. They are sent at connect time (libpq
    ``options``, before the connection string's own ``options``, whose settings win), and
    apply neither to :meth:`install` nor to your own connections.

    ``prepare`` picks server-side prepared statements: ``None`` (default) uses them unless a
    connection pooler is detected (PgBouncer in transaction mode would run a statement
    prepared on one server connection on another); ``False`` never (behind any pooler that
    does not track them, e.g. PgBouncer before 1.21); ``True`` always (direct connections,
    PgBouncer 1.21+ with ``max_prepared_statements`` > 0). Behind a pooler that refuses the
    ``options`` startup parameter (PgBouncer), pg-jobmon connects without it and warns once:
    set the time-outs on the server then (``ALTER ROLE ... SET lock_timeout = '5s'``).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        application_name: str = DEFAULT_APPLICATION_NAME,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        lock_timeout: float | timedelta | None = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: float | timedelta | None = DEFAULT_STATEMENT_TIMEOUT,
        prepare: bool | None = None,
        plugins: pluggy.PluginManager | None = None,
        buffered: bool = False,
        flush_interval: float = 0.2,
        max_buffer: int = 1000,
    ) -> None:
        self.schema = _identifier(schema, "schema")
        validation.text(application_name, "application_name")
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int):
            raise InvalidArgumentError("connect_timeout must be an int number of seconds")
        if connect_timeout < 1:
            raise InvalidArgumentError("connect_timeout must be at least 1 second")
        self._target = resolve_target(
            dsn, application_name=application_name, connect_timeout=connect_timeout
        )
        self._connection = LoggingConnection(
            self._target,
            prepare=prepare,
            settings=SessionSettings.create(lock_timeout, statement_timeout),
        )
        self._writer = Writer(self._connection, self.schema)
        self._buffer: StepBuffer | None = None
        if buffered:
            if (
                isinstance(flush_interval, bool)
                or not isinstance(flush_interval, int | float)
                or not 0 < flush_interval <= 3600  # a Timer needs a finite wait (not nan/inf)
            ):
                raise InvalidArgumentError(
                    "flush_interval must be a positive number of seconds, at most 3600"
                )
            if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
                raise InvalidArgumentError("max_buffer must be a positive int")
            self._buffer = StepBuffer(
                self._connection, self.schema, flush_interval=flush_interval, max_buffer=max_buffer
            )
        self._checker = Checker(self._connection, self.schema)
        self._reports = Reports(self._connection, self.schema)
        self._status_tables: set[str] = {STATUS_TABLE}
        self.plugins = plugins if plugins is not None else get_plugin_manager()
        self._hooks = PluginCaller(self.plugins, self.schema)
        self.alert_state: dict[str | None, int] = {}
        """Worst code per job name (problems only) at the last check: what the next
        in-memory check's changes (the ``jobmon_alerts_found`` hook) are measured against.
        Set it to carry a state of your own across processes (``jobmon check --notify
        --state-file`` does); ``check_job_status(shared_state=True)`` keeps it in the schema
        instead, and leaves here the state it stored."""
        self._alert_memory = AlertMemory(self._target, self._connection.settings, self.schema)

    def __repr__(self) -> str:
        return f"Jobmon(dsn={self._target.display!r}, schema={self.schema!r})"

    # -- life cycle ---------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the statement the logging connection is running now, if any (for
        timeouts: a check that gives up must not leave its query waiting in the server)."""
        self._connection.cancel()
        self._alert_memory.cancel()

    def flush(self) -> int:
        """Write the buffered steps now (``buffered=True``); return how many were written.
        Every job-level write calls it first, so a job never ends before its steps land."""
        return self._buffer.flush() if self._buffer is not None else 0

    def close(self) -> None:
        """Write buffered steps, then close the logging connection and that of shared-state
        checks (a later call opens new ones). The connections are closed whatever the flush
        does: a flush that fails (the server is unreachable) is raised after the close, its
        steps stay queued for the next flush or the exit. Closing again is harmless."""
        try:
            self.flush()
        finally:
            self._connection.close()
            self._alert_memory.close()

    def __enter__(self) -> Jobmon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------

    def install(self) -> list[int]:
        """Create or upgrade the jobmon schema; return the migration versions applied.

        Idempotent, and safe when several processes call it at once.
        """
        return self._on_own_connection(self._install_on)

    def _install_on(self, conn: psycopg.Connection) -> list[int]:
        applied = schema.install(conn, self.schema)
        try:
            problem = sql_interface.prepare(conn, self.schema, password=conn.info.password)
        except psycopg.Error as exc:  # the Python side never needs the SQL interface
            # the primary message only: a failed statement may have carried a password
            reason = exc.diag.message_primary or type(exc).__name__
            problem = f"the SQL interface could not be prepared: {reason}"
        if problem:
            logger.warning("%s", problem)
        return applied

    def allow_sql_logging(self, role: str, password: str | None = None) -> None:
        """Let ``role`` (a login role, e.g. a member of the writer role) log from SQL and
        PL/pgSQL: a user mapping on the SQL interface's loopback server that logs in as
        ``role`` with ``password``, and USAGE on that server. The password is kept where
        PostgreSQL keeps foreign-server credentials (visible only to superusers and the role
        itself). A role that is not a superuser needs one, and password authentication on
        the loopback address: dblink's rule. Run as the server's owner or a superuser."""
        self._on_own_connection(
            lambda conn: sql_interface.allow_role(conn, self.schema, role, password)
        )

    def grant_statements(
        self,
        writer: str | None = roles.DEFAULT_WRITER,
        monitor: str | None = roles.DEFAULT_MONITOR,
        admin: str | None = roles.DEFAULT_ADMIN,
        *,
        read_all_stats: bool = False,
        signal_backends: bool = False,
    ) -> list[Composed]:
        """The GRANT statements giving each role (None: left out) its least privileges on
        this schema, composed with ``psycopg.sql`` (``.as_string(conn)`` shows them). Nothing
        is sent to the database. See :mod:`jobmon_core.roles` for what each role gets."""
        wanted = roles.Roles(writer, monitor, admin, read_all_stats, signal_backends)
        return roles.grant_statements(self.schema, wanted)

    def roles_script(
        self,
        writer: str | None = roles.DEFAULT_WRITER,
        monitor: str | None = roles.DEFAULT_MONITOR,
        admin: str | None = roles.DEFAULT_ADMIN,
        *,
        read_all_stats: bool = False,
        signal_backends: bool = False,
    ) -> str:
        """The SQL script ``create_roles`` runs (create missing roles NOLOGIN, then grant),
        one transaction with comments, for a DBA to review and pipe into ``psql``."""
        wanted = roles.Roles(writer, monitor, admin, read_all_stats, signal_backends)
        return roles.script(self.schema, wanted)

    def create_roles(
        self,
        writer: str | None = roles.DEFAULT_WRITER,
        monitor: str | None = roles.DEFAULT_MONITOR,
        admin: str | None = roles.DEFAULT_ADMIN,
        *,
        read_all_stats: bool = False,
        signal_backends: bool = False,
    ) -> list[str]:
        """Create the roles that do not exist yet (NOLOGIN: grant them to login roles) and
        grant every role its privileges, in one transaction; return the roles created now.

        Idempotent: existing roles are reused as they are, grants only add. The schema must
        be installed at the newest version; call this again after each ``install()`` that
        upgraded it. Needs CREATEROLE and the ownership of the jobmon objects (or a
        superuser); :class:`JobmonPermissionError` says so otherwise."""
        wanted = roles.Roles(writer, monitor, admin, read_all_stats, signal_backends)
        return self._on_own_connection(lambda conn: roles.create_roles(conn, self.schema, wanted))

    def _on_own_connection(self, operation: Callable[[psycopg.Connection], T]) -> T:
        """Run ``operation`` on a connection of its own (autocommit), for schema and role
        changes, which must not share the logging connection's retry-once semantics."""
        try:
            # Never prepared: behind a transaction pooler a named statement would outlive this
            # connection on a server connection other clients then get (PgBouncer < 1.21).
            with psycopg.connect(
                self._target.conninfo, autocommit=True, prepare_threshold=None
            ) as conn:
                return operation(conn)
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None:
                raise JobmonConnectionError(
                    f"cannot connect to the jobmon database ({self._target.display}): "
                    f"{self._target.redact(str(exc).strip())}"
                ) from None
            raise translate_error(exc, self._target) from exc
        except psycopg.Error as exc:
            raise translate_error(exc, self._target) from exc

    def schema_version(self) -> int:
        """The installed schema version of this schema; 0 if pg-jobmon is not installed."""
        return self._connection.run(lambda conn, _: schema.installed_version(conn, self.schema))

    # -- the writer ---------------------------------------------------------------------------

    def add_job(
        self, name: str, *, conn: psycopg.Connection | None = None, run_key: str | None = None
    ) -> int:
        """Start a job run; return its ``job_id``. The name is upper-cased by the database.

        ``owner`` and ``pid`` are those of ``conn`` (the job's work connection) when given,
        else of the logging connection. With ``run_key`` (an orchestrator's run id, such as
        ``airflow:<dag_id>/<run_id>@<attempt>``), the job of that key is returned if it
        exists, so every process of one run logs into one job, without a race; the plugins'
        ``jobmon_job_started`` hears of it once, from the call that created it.
        """
        validation.name(name)
        validation.key(run_key, "run_key", allow_none=True)
        owner: str | None = None
        pid: int | None = None
        if conn is not None:
            owner, pid = caller.identity(caller.require_connection(conn))
        if run_key is not None:
            job_id, created = self._writer.add_run_job(name, run_key, owner=owner, pid=pid)
            if created:
                self._hooks.job_started(job_id, name)
            return job_id
        self.flush()
        job_id = self._writer.add_job(name, owner=owner, pid=pid)
        if self._buffer is not None:
            self._buffer.known_job(job_id)
        self._hooks.job_started(job_id, name)
        return job_id

    def add_step(self, job_id: int, action: str, *, step_key: str | None = None) -> int:
        """Add a step to a job; return its ``step_id``. With ``step_key``, the step of that
        key in the job is returned if it exists (one step per task try, however often a
        rescheduled sensor starts it again)."""
        validation.ident(job_id, "job_id")
        validation.text(action, "action")
        validation.key(step_key, "step_key", allow_none=True)
        if step_key is not None:
            self.flush()
            return self._writer.add_run_step(job_id, step_key, action)
        if self._buffer is not None:
            return self._buffer.add_step(job_id, action)
        return self._writer.add_step(job_id, action)

    def update_step(self, step_id: int, status: str, message: str | None) -> None:
        """Set a step's status and message (and its end time). Later updates overwrite."""
        validation.ident(step_id, "step_id")
        validation.text(status, "status")
        validation.text(message, "message", allow_none=True)
        if self._buffer is not None:
            job_id = self._buffer.update_step(step_id, status, message)
        else:
            job_id = self._writer.update_step(step_id, status, message)
        self._hooks.step_finished(step_id, status, message, job_id)

    def close_job(self, job_id: int, *, status_table: str | None = None) -> None:
        """Finish a job successfully (the status text of alert code 1)."""
        validation.ident(job_id, "job_id")
        self.flush()
        status = self._writer.finish_job(job_id, 1, self._status_table(status_table))
        self._hooks.job_finished(job_id, status, 1)

    def fail_job(self, job_id: int, level: int = 3, *, status_table: str | None = None) -> None:
        """Finish a job unsuccessfully at alert ``level`` (3 CRITICAL by default)."""
        validation.ident(job_id, "job_id")
        validation.level(level)
        self.flush()
        status = self._writer.finish_job(job_id, level, self._status_table(status_table))
        self._hooks.job_finished(job_id, status, level)

    def cancel_job(self, job_id: int, *, status_table: str | None = None) -> bool:
        """Cancel a running job from outside it: signal its backend, log it as failed.

        The backend is signalled (``pg_cancel_backend``) only while the job is open and its
        pid still belongs to the session that started it, never to a later session that
        reused the pid. Returns whether a backend was signalled. The job's last step records
        the cancellation and the job is failed at level 3 either way, which is also how an
        orphaned job (its process died) is closed.
        """
        validation.ident(job_id, "job_id")
        self.flush()
        signalled, status = self._writer.cancel_job(job_id, self._status_table(status_table))
        self._hooks.job_finished(job_id, status, 3)
        return signalled

    def sql_step(
        self,
        job_id: int,
        action: str,
        sql: Any,
        params: Any = None,
        *,
        conn: psycopg.Connection,
    ) -> bool:
        """Run ``sql`` on ``conn`` as a logged step; return whether it succeeded.

        Success: step ``OK`` / ``Rows affected: N``. Failure: the statement is rolled back to
        a savepoint (the caller's transaction stays usable), the step is ``CRITICAL`` /
        ``ERROR: <message>``, and False is returned. Unlike upstream, a successful step does
        not close the job. Nothing is committed on ``conn``: that stays the caller's call.
        """
        validation.ident(job_id, "job_id")
        validation.text(action, "action")
        caller.require_connection(conn)
        caller.require_query(conn, sql)
        step_id = self.add_step(job_id, action)
        try:
            rows = caller.run_sql(conn, sql, params)
        except Exception as exc:  # the statement failed, or its params could not be sent
            self.update_step(step_id, STEP_FAILED, caller.error_text(exc))
            return False
        except BaseException as exc:  # interrupted (a task timeout, Ctrl-C): say so, go on
            log_quietly(exc, self.update_step, step_id, STEP_FAILED, describe(exc))
            raise
        self.update_step(step_id, STEP_OK, f"Rows affected: {rows}")
        return True

    def sql_job(self, name: str, sql: Any, params: Any = None, *, conn: psycopg.Connection) -> str:
        """Run ``sql`` on ``conn`` as a whole logged job, as upstream's ``sql_job``.

        Returns upstream's messages: ``Job logged with job id: <id>``, ``Job ID <id> failed.
        See job_detail table for more details`` (errors are logged, not raised), or, when
        another session holds the job's ``sql_job`` lock, ``Concurrent job found. Obtaining
        advisory lock FAILED for job: <name>`` (upstream crashes in that branch).
        """
        validation.name(name)
        caller.require_connection(conn)
        caller.require_query(conn, sql)
        job_id = self.add_job(name, conn=conn)
        failed = f"Job ID {job_id} failed. See job_detail table for more details"
        lock_action = f"Obtaining advisory lock for job: {name}"
        try:
            locked = caller.try_sql_lock(conn, name)
        except psycopg.Error as exc:
            self._fail_with_step(job_id, lock_action, caller.error_text(exc))
            return failed
        if not locked:
            step_id = self.add_step(job_id, lock_action)
            self.update_step(step_id, STEP_OK, "Found concurrent job. Exiting gracefully")
            self.close_job(job_id)
            return f"Concurrent job found. Obtaining advisory lock FAILED for job: {name}"
        try:
            action = "Running sql: " + caller.quote_literal(caller.query_text(conn, sql))
            step_id = self.add_step(job_id, action)
            try:
                rows = caller.run_sql(conn, sql, params)
            except Exception as exc:  # the statement failed, or its params could not be sent
                self.update_step(step_id, STEP_FAILED, caller.error_text(exc))
                self.fail_job(job_id)
                return failed
            self.update_step(step_id, STEP_OK, f"Rows affected: {rows}")
            self.close_job(job_id)
            return f"Job logged with job id: {job_id}"
        finally:
            caller.release_sql_lock(conn, name)

    def _fail_with_step(self, job_id: int, action: str, message: str) -> None:
        step_id = self.add_step(job_id, action)
        self.update_step(step_id, STEP_FAILED, message)
        self.fail_job(job_id)

    # -- context managers ---------------------------------------------------------------------

    def job(self, name: str, *, conn: psycopg.Connection | None = None) -> Job:
        """``with jm.job(name, conn=work) as job:``: a job closed OK on a clean exit and
        failed (CRITICAL) on an exception, which always propagates."""
        validation.name(name)
        if conn is not None:
            caller.require_connection(conn)
        return Job(self, name, conn)

    # -- the checker --------------------------------------------------------------------------

    def check_job_status(
        self, history: timedelta | None = None, *, shared_state: bool = False
    ) -> list[Alert]:
        """Every problem, worst first, by the schema's ``check_job_status`` (pg_jobmon 1.4's
        rules). ``history`` is the window to look back; None means the longest active
        threshold, else one week. A window shorter than the longest active threshold is a
        :class:`~jobmon_core.checker.CheckHistoryError`. Healthy: one ``OK`` alert. Jobs
        with duration limits (:meth:`configure_check`) add RUNNING_TOO_LONG / RAN_TOO_LONG
        rows; without them the rows are exactly pg_jobmon 1.4's.

        Plugins (``jobmon_alerts_found``) hear the alerts and the flips since the previous
        check; the state they are measured against is updated only when every plugin took
        them, so after a failed notification the same flips are reported again.

        ``shared_state=False`` (default): the previous check is this object's
        :attr:`alert_state`, in memory. ``shared_state=True``: it is the schema's table
        ``job_alert_state``, shared by every process that checks with ``shared_state=True``
        (``jobmon check --notify``, ``JobmonCheckOperator``), so a flip is reported once,
        not by each new process, and two checks at the same moment report it once (the
        second waits for the first, at most ``lock_timeout``; past that it tells the plugins
        no changes, with a warning). That check writes, so the role needs the monitor
        grants of schema version 7. With no ``jobmon_alerts_found`` plugin registered,
        either mode is a plain read-only check."""
        if shared_state and self._hooks.hears_alerts():
            shared = self._alert_memory.check(history, self._hooks.alerts_found)
            if shared is not None:
                alerts, self.alert_state = shared
                return alerts
            alerts = self._checker.check_job_status(history)
            self._hooks.alerts_found(alerts, [])  # the check holding the state reports them
            return alerts
        alerts = self._checker.check_job_status(history)
        changes = diff_alerts(self.alert_state, alerts)
        if self._hooks.alerts_found(alerts, changes):
            self.alert_state = alert_state(alerts)
        return alerts

    def check_summary(self, history: timedelta | None = None) -> Alert:
        """The original one-line form: the worst code and every problem in parentheses,
        e.g. ``(NIGHTLY LOAD: 1 CRITICAL run(s); ...)`` or ``(All jobs run successfully)``."""
        return self._checker.check_summary(history)

    def configure_check(
        self,
        job_name: str,
        *,
        warn: timedelta,
        error: timedelta,
        sensitivity: int = 0,
        escalate: int | None = None,
        active: bool = True,
        warn_duration: timedelta | None = None,
        error_duration: timedelta | None = None,
        duration_factor: float | None = None,
        duration_percentile: float | None = None,
        duration_runs: int | None = None,
    ) -> CheckConfig:
        """Create or replace the monitoring of ``job_name`` (upper-cased like job names):
        MISSING after ``warn`` (WARNING) or ``error`` (CRITICAL) without a run; an alert
        after more than ``sensitivity`` failures at one level; escalation after
        ``escalate`` alerts at the top level. ``active=False`` mutes the job.

        Runs too long (each optional, off when None): the job's latest run, still running
        or finished, longer than ``warn_duration`` (WARNING) or ``error_duration``
        (CRITICAL) alerts as RUNNING_TOO_LONG or RAN_TOO_LONG, until a later run starts.
        ``duration_factor`` adds "slower than usual" (WARNING): longer than the factor times
        the ``duration_percentile`` (default 0.5, the median) of the durations of the
        successful runs among its ``duration_runs`` (default 20) previous runs."""
        return self._checker.configure_check(
            job_name,
            warn=warn,
            error=error,
            sensitivity=sensitivity,
            escalate=escalate,
            active=active,
            warn_duration=warn_duration,
            error_duration=error_duration,
            duration_factor=duration_factor,
            duration_percentile=duration_percentile,
            duration_runs=duration_runs,
        )

    def run_state(self, job_name: str, since: datetime) -> RunState:
        """Where the latest run of ``job_name`` started at or after ``since`` stands:
        waiting (none yet), running, succeeded or failed. For sensors that wait on a job."""
        return self._checker.run_state(job_name, since)

    @property
    def target(self) -> ConnectionTarget:
        """The parsed connection string (``display`` and ``redact`` are password-free)."""
        return self._target

    def remove_check(self, job_name: str) -> bool:
        """Remove a job's monitoring configuration; return whether there was one."""
        return self._checker.remove_check(job_name)

    def list_checks(self) -> list[CheckConfig]:
        """Every ``job_check_config`` row, by job name."""
        return self._checker.list_checks()

    # -- reports and retention ----------------------------------------------------------------

    def show_job(self, name: str, limit: int = 10) -> list[JobRecord]:
        """The newest runs of the job ``name``."""
        return self._reports.show_job(name, limit)

    def show_job_like(
        self, pattern: str, limit: int = 10, *, status: str | None = None
    ) -> list[JobRecord]:
        """The newest runs of jobs whose name matches the POSIX regex ``pattern``,
        case-insensitively (upstream upper-cases the pattern, which turns ``\\d`` into
        ``\\D``; we match with ``~*`` instead); with ``status``, only runs with exactly
        that status text."""
        return self._reports.show_job_like(pattern, limit, status=status)

    def show_job_status(
        self, status: str, limit: int = 10, *, name: str | None = None
    ) -> list[JobRecord]:
        """The newest runs with exactly this status text (of the job ``name`` if given)."""
        return self._reports.show_job_status(status, limit, name=name)

    def show_detail(self, job: int | str, jobs: int = 1) -> list[StepRecord]:
        """The steps of a run (by job id), or of the newest ``jobs`` runs of a job name."""
        return self._reports.show_detail(job, jobs)

    def show_running(self, limit: int = 10) -> list[JobRecord]:
        """Runs still in progress: open, and their session still connected (never a later
        session that reused the pid)."""
        return self._reports.show_running(limit)

    def job_log_clear(self, older_than: timedelta, *, batch_size: int = DEFAULT_BATCH) -> int:
        """Delete runs (and their steps) that started more than ``older_than`` ago, in
        batches of ``batch_size``; the purge is logged as a job of its own. Returns the
        number of runs deleted."""
        return self._reports.job_log_clear(self, older_than, batch_size)

    # -- helpers ------------------------------------------------------------------------------

    def _status_table(self, name: str | None) -> Identifier:
        """The status table to read texts from, checked to be a table of our schema with
        ``alert_code`` and ``alert_text`` (the name is always quoted, never spliced)."""
        table = STATUS_TABLE if name is None else _identifier(name, "status_table")
        if table not in self._status_tables:
            self._connection.run(lambda conn, _: self._check_status_table(conn, table))
            self._status_tables.add(table)
        return Identifier(self.schema, table)

    def _check_status_table(self, conn: psycopg.Connection, table: str) -> None:
        row = conn.execute(
            "SELECT count(a.attname) FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
            "  AND NOT a.attisdropped AND a.attname IN ('alert_code', 'alert_text')"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " GROUP BY c.oid",
            [self.schema, table],
        ).fetchone()
        if row is None:
            raise StatusTableError(
                f"status_table {table!r} is not a table of schema {self.schema!r}; create it "
                "there with columns (alert_code integer, alert_text text)"
            )
        if row[0] < 2:
            raise StatusTableError(
                f"status_table {table!r} needs the columns alert_code and alert_text"
            )
