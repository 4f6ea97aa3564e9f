"""The log writes: add_job, add_step, update_step, finishing and cancelling a job.

Each write is one prepared statement on the logging connection (autocommit), so it is
durable when the call returns and independent of the caller's transaction.

**Exactly once.** When the logging connection breaks, :class:`LoggingConnection` runs the
write once more on a new connection. A write whose commit reached the server but whose
answer was lost must not land twice, so every write is idempotent by construction:

- inserts carry an id taken from the table's own sequence *before* the insert (each insert
  reserves the next id in its ``RETURNING`` clause, so this costs no extra round trip) and
  use ``ON CONFLICT DO NOTHING``; a retry of a landed insert changes nothing;
- ``update_step`` overwrites, so doing it twice is doing it once;
- finishing a job only touches an open job (``end_time IS NULL``); a retry that finds the
  job finished with the very status it was setting knows its first attempt landed.

A reserved id older than :data:`RESERVATION_TTL` seconds is not used, so ids keep following
the order in which rows were written, across processes, to within that bound. A child of
``fork()`` drops the reservations it inherited (:mod:`jobmon_core.forking`): they are its
parent's, and two processes inserting the same id would collide.

A first insert whose id is taken is an error (:class:`DatabaseError`), never a merge: only a
retry may find its row already there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from . import forking
from .connection import LoggingConnection
from .errors import (
    DatabaseError,
    JobFinishedError,
    JobNotFoundError,
    StatusTextError,
    StepNotFoundError,
)

RESERVATION_TTL = 1.0
"""Seconds a reserved id stays usable; older ones are dropped (ids may have gaps, as always)."""


@dataclass
class _Reservation:
    value: int
    taken_at: float


class _Statements:
    """The writer's statements for one schema, composed once with ``psycopg.sql``."""

    def __init__(self, schema: str) -> None:
        def t(name: str) -> sql.Identifier:
            return sql.Identifier(schema, name)

        def seq(name: str) -> sql.Composable:
            return sql.SQL("nextval({}::regclass)").format(sql.Literal(t(name).as_string(None)))

        self.next_job_id = sql.SQL("SELECT {}").format(seq("job_log_job_id_seq"))
        self.next_step_id = sql.SQL("SELECT {}").format(seq("job_detail_step_id_seq"))
        self.add_job = sql.SQL(
            "INSERT INTO {job_log} (job_id, owner, job_name, start_time, pid)"
            " VALUES (%(job_id)s, coalesce(%(owner)s, current_user), upper(%(name)s),"
            " current_timestamp, coalesce(%(pid)s, pg_backend_pid()))"
            " ON CONFLICT (job_id) DO NOTHING"
            " RETURNING {next_id}"
        ).format(job_log=t("job_log"), next_id=seq("job_log_job_id_seq"))
        self.add_step = sql.SQL(
            "INSERT INTO {job_detail} (job_id, step_id, action, start_time)"
            " VALUES (%(job_id)s, %(step_id)s, %(action)s, current_timestamp)"
            " ON CONFLICT (step_id) DO NOTHING"
            " RETURNING {next_id}"
        ).format(job_detail=t("job_detail"), next_id=seq("job_detail_step_id_seq"))
        self.update_step = sql.SQL(
            "UPDATE {job_detail} SET end_time = current_timestamp,"
            " elapsed_time = date_part('epoch', current_timestamp - start_time)::real,"
            " status = %(status)s, message = %(message)s"
            " WHERE step_id = %(step_id)s"
            " RETURNING job_id"
        ).format(job_detail=t("job_detail"))
        self.job_state = sql.SQL(
            "SELECT j.job_id IS NOT NULL, j.end_time, j.status FROM (SELECT) AS one"
            " LEFT JOIN {job_log} AS j ON j.job_id = %(job_id)s"
        ).format(job_log=t("job_log"))
        self._schema = schema
        self._t = t

    def run_job(self) -> sql.Composed:
        """Get or create the job of a run key, and say whether it was created (version 8)."""
        return sql.SQL(
            "SELECT job_id, created FROM {}(%(name)s, %(run_key)s, %(owner)s, %(pid)s)"
        ).format(self._t("find_or_add_run_job"))

    def run_step(self) -> sql.Composed:
        return sql.SQL("SELECT {}(%(job_id)s, %(step_key)s, %(action)s)").format(
            self._t("add_run_step")
        )

    def finish_job(self, status_table: sql.Identifier) -> sql.Composed:
        """Set end_time and the status text of ``level``, only on an open job."""
        return sql.SQL(
            "UPDATE {job_log} AS j SET end_time = current_timestamp, status = s.alert_text"
            " FROM (SELECT alert_text FROM {status_table} WHERE alert_code = %(level)s"
            " LIMIT 1) AS s"
            " WHERE j.job_id = %(job_id)s AND j.end_time IS NULL"
            " RETURNING j.status"
        ).format(job_log=self._t("job_log"), status_table=status_table)

    def status_text(self, status_table: sql.Identifier) -> sql.Composed:
        return sql.SQL(
            "SELECT alert_text FROM {status_table} WHERE alert_code = %(level)s LIMIT 1"
        ).format(status_table=status_table)

    def cancel_target(self) -> sql.Composed:
        """Lock an open job's row and find its backend, if that backend is still the one
        that started the job (a pid reused by a later session has a later backend_start)."""
        return sql.SQL(
            "SELECT j.end_time, j.status, a.pid"
            " FROM {job_log} AS j"
            " LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = j.pid"
            "  AND a.backend_start <= j.start_time AND a.pid <> pg_backend_pid()"
            " WHERE j.job_id = %(job_id)s"
            " FOR UPDATE OF j"
        ).format(job_log=self._t("job_log"))

    def cancel_step(self) -> sql.Composed:
        """Mark the job's last step as cancelled (upstream's message), or add one if none."""
        return sql.SQL(
            "WITH msg AS (SELECT format('Manually cancelled via call to %%s.cancel_job() by %%s',"
            "   quote_ident(%(schema)s), current_user) AS text),"
            " last AS (SELECT max(step_id) AS step_id FROM {job_detail}"
            "   WHERE job_id = %(job_id)s),"
            " updated AS (UPDATE {job_detail} AS d SET end_time = current_timestamp,"
            "   elapsed_time = date_part('epoch', current_timestamp - d.start_time)::real,"
            "   status = %(status)s, message = msg.text"
            "   FROM last, msg WHERE d.step_id = last.step_id RETURNING d.step_id)"
            " INSERT INTO {job_detail} (job_id, action, start_time, end_time, elapsed_time,"
            "   status, message)"
            " SELECT %(job_id)s, 'CANCEL JOB', current_timestamp, current_timestamp, 0,"
            "   %(status)s, msg.text FROM msg WHERE NOT EXISTS (SELECT FROM updated)"
        ).format(job_detail=self._t("job_detail"))

    @property
    def schema(self) -> str:
        return self._schema


class Writer:
    """The log writes of one jobmon schema, run on one :class:`LoggingConnection`."""

    def __init__(self, connection: LoggingConnection, schema: str) -> None:
        self._connection = connection
        self._sql = _Statements(schema)
        self._next_job_id: _Reservation | None = None
        self._next_step_id: _Reservation | None = None
        self._rendered_for: psycopg.Connection | None = None
        self._rendered: dict[str, bytes] = {}
        forking.forget_in_child(self)

    def after_fork_in_child(self) -> None:
        """Drop the ids reserved by the parent: the parent will use them."""
        self._next_job_id = self._next_step_id = None

    def _hot(self, conn: psycopg.Connection, name: str) -> bytes:
        """The statement ``name`` of :class:`_Statements` rendered for ``conn``.

        Rendering a ``sql.Composed`` (quoting its identifiers for the connection's encoding)
        costs a few microseconds on every call; the per-step statements run thousands of
        times per job, so each is rendered once per connection and sent as bytes."""
        if conn is not self._rendered_for:
            self._rendered, self._rendered_for = {}, conn
        rendered = self._rendered.get(name)
        if rendered is None:
            statement: sql.Composable = getattr(self._sql, name)
            rendered = self._rendered[name] = statement.as_bytes(conn)
        return rendered

    # -- id reservations ----------------------------------------------------------------------

    @staticmethod
    def _fresh(reservation: _Reservation | None) -> int | None:
        if reservation is not None and time.monotonic() - reservation.taken_at < RESERVATION_TTL:
            return reservation.value
        return None

    @staticmethod
    def _reserve(value: int | None) -> _Reservation | None:
        return None if value is None else _Reservation(value, time.monotonic())

    def _take_job_id(self, conn: psycopg.Connection) -> int:
        value, self._next_job_id = self._fresh(self._next_job_id), None
        return value if value is not None else self._nextval(conn, self._hot(conn, "next_job_id"))

    def _take_step_id(self, conn: psycopg.Connection) -> int:
        value, self._next_step_id = self._fresh(self._next_step_id), None
        return value if value is not None else self._nextval(conn, self._hot(conn, "next_step_id"))

    @staticmethod
    def _nextval(conn: psycopg.Connection, statement: bytes) -> int:
        row = conn.execute(statement).fetchone()
        assert row is not None
        return int(row[0])

    # -- writes -------------------------------------------------------------------------------

    def _pid(self, pid: int | None) -> int | None:
        """The pid to record for a job; ``None`` means the logging session's own.

        Behind a transaction pooler (PgBouncer) the logging session's backend is a shared
        server connection that outlives the job and runs other clients' queries: recording
        it would make ``show_running``/RUNNING follow a stranger and let ``cancel_job``
        cancel another application's query. No backend has pid 0, so 0 records "no session
        of its own": never running, never signalled, still closable by ``cancel_job``."""
        if pid is None and self._connection.pooled:
            return 0
        return pid

    def add_job(self, name: str, *, owner: str | None, pid: int | None) -> int:
        job_id: int | None = None

        def write(conn: psycopg.Connection, retrying: bool) -> int:
            nonlocal job_id
            if job_id is None:
                job_id = self._take_job_id(conn)
            params = {"job_id": job_id, "owner": owner, "name": name, "pid": self._pid(pid)}
            row = conn.execute(self._hot(conn, "add_job"), params).fetchone()
            if row is None and not retrying:
                raise DatabaseError(_taken(job_id, "job_id", "job_log", "job_log_job_id_seq"))
            self._next_job_id = self._reserve(row[0] if row else None)
            return job_id

        return self._connection.run(write)

    def add_run_job(
        self, name: str, run_key: str, *, owner: str | None, pid: int | None
    ) -> tuple[int, bool]:
        """Get or create the job of ``run_key``; return its id and whether this call created
        it. Idempotent by nature, so retry-safe; but a retry after a lost answer finds the
        job its first attempt created and says "not created", so a caller that acts once per
        created job (the job_started hook) may, rarely, not act: never twice."""
        statement = self._sql.run_job()

        def write(conn: psycopg.Connection, _: bool) -> tuple[int, bool]:
            params = {"name": name, "run_key": run_key, "owner": owner, "pid": self._pid(pid)}
            row = conn.execute(statement, params).fetchone()
            assert row is not None  # the function always returns one row
            return int(row[0]), bool(row[1])

        return self._connection.run(write)

    def add_run_step(self, job_id: int, step_key: str, action: str) -> int:
        """Get or create the step ``step_key`` of a job: idempotent, so retry-safe."""
        params = {"job_id": job_id, "step_key": step_key, "action": action}
        statement = self._sql.run_step()

        def write(conn: psycopg.Connection, _: bool) -> int:
            try:
                row = conn.execute(statement, params).fetchone()
            except pg_errors.ForeignKeyViolation:
                raise JobNotFoundError(f"no job with job_id {job_id}: add_job() first") from None
            assert row is not None  # the function always returns one row
            return int(row[0])

        return self._connection.run(write)

    def add_step(self, job_id: int, action: str) -> int:
        step_id: int | None = None

        def write(conn: psycopg.Connection, retrying: bool) -> int:
            nonlocal step_id
            if step_id is None:
                step_id = self._take_step_id(conn)
            params = {"job_id": job_id, "step_id": step_id, "action": action}
            try:
                row = conn.execute(self._hot(conn, "add_step"), params).fetchone()
            except pg_errors.ForeignKeyViolation:
                raise JobNotFoundError(f"no job with job_id {job_id}: add_job() first") from None
            if row is None and not retrying:
                raise DatabaseError(
                    _taken(step_id, "step_id", "job_detail", "job_detail_step_id_seq")
                )
            self._next_step_id = self._reserve(row[0] if row else None)
            return step_id

        return self._connection.run(write)

    def update_step(self, step_id: int, status: str, message: str | None) -> int:
        """Set a step's status, message and end time; return the step's job_id (read in the
        same round trip, for the plugins' ``jobmon_step_finished``)."""
        params = {"step_id": step_id, "status": status, "message": message}

        def write(conn: psycopg.Connection, retrying: bool) -> int:
            row = conn.execute(self._hot(conn, "update_step"), params).fetchone()
            if row is None:
                raise StepNotFoundError(f"no step with step_id {step_id}: add_step() first")
            return int(row[0])

        return self._connection.run(write)

    def finish_job(self, job_id: int, level: int, status_table: sql.Identifier) -> str:
        """Close (level 1) or fail (level > 1) an open job; return the status text set."""
        params = {"job_id": job_id, "level": level}
        finish = self._sql.finish_job(status_table)
        status_text = self._sql.status_text(status_table)

        def write(conn: psycopg.Connection, retrying: bool) -> str:
            row = conn.execute(finish, params).fetchone()
            if row is not None:
                return str(row[0])
            state = conn.execute(self._hot(conn, "job_state"), params).fetchone()
            assert state is not None  # a LEFT JOIN from one row: always one row
            exists, end_time, status = state
            text = conn.execute(status_text, params).fetchone()
            if not exists:
                raise JobNotFoundError(f"no job with job_id {job_id}")
            if text is None:
                raise StatusTextError(self._no_text(level, status_table))
            if retrying and status == text[0]:
                return str(status)  # our first attempt landed before the connection broke
            raise JobFinishedError(
                f"job {job_id} already finished at {end_time} with status {status!r}; "
                "nothing was changed"
            )

        return self._connection.run(write)

    def cancel_job(self, job_id: int, status_table: sql.Identifier) -> tuple[bool, str]:
        """Fail an open job as manually cancelled; signal its backend if it is still the one
        that started the job. Return whether a backend was signalled, and the status set."""
        params = {"job_id": job_id, "level": 3, "schema": self._sql.schema}
        target = self._sql.cancel_target()
        status_text = self._sql.status_text(status_table)
        finish = self._sql.finish_job(status_table)

        def write(conn: psycopg.Connection, retrying: bool) -> tuple[bool, str]:
            with conn.transaction():
                row = conn.execute(target, params).fetchone()
                if row is None:
                    raise JobNotFoundError(f"no job with job_id {job_id}")
                end_time, status, live_pid = row
                text = conn.execute(status_text, params).fetchone()
                if text is None:
                    raise StatusTextError(self._no_text(3, status_table))
                if end_time is not None:
                    if retrying and status == text[0]:
                        return True, status  # our first attempt landed before the break
                    raise JobFinishedError(
                        f"job {job_id} already finished at {end_time} with status {status!r}; "
                        "not cancelled"
                    )
                signalled = False
                if live_pid is not None:
                    answer = conn.execute("SELECT pg_cancel_backend(%s)", [live_pid]).fetchone()
                    signalled = answer is not None and bool(answer[0])
                conn.execute(self._sql.cancel_step(), {**params, "status": text[0]})
                conn.execute(finish, params)
                return signalled, text[0]

        return self._connection.run(write)

    @staticmethod
    def _no_text(level: int, status_table: sql.Identifier) -> str:
        return (
            f"alert level {level} has no text in {status_table.as_string(None)}; "
            f"insert a row (alert_code {level}, alert_text ...) or use an existing level"
        )


def _taken(value: int, column: str, table: str, sequence: str) -> str:
    """The message for a first insert that found its id taken: every cause we know of."""
    return (
        f"{column} {value} is already in {table}, written by someone else; nothing was "
        f"written. The id came from {sequence}, so either the sequence is behind the table "
        f"(set back with setval(), or rows inserted with explicit {column}s: setval() it "
        f"past max({column})), or it was reserved by a copy of this process made without "
        "os.fork() (a child of os.fork() drops its parent's reservations)"
    )
