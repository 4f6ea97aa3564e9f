"""Buffered step logging, for jobs that log very many steps.

``Jobmon(dsn, buffered=True)`` keeps ``add_step``/``update_step`` in memory and writes them in
batches: one pipelined transaction per batch, with ``synchronous_commit = off`` set for that
transaction only (``SET LOCAL``: a session-level ``SET`` would stay behind on a server
connection that a pooler such as PgBouncer then lends to other clients). Job-level
writes (add_job, close_job, fail_job, cancel_job) stay durable and first flush the buffer, so
a job never finishes before its steps are written.

What can be lost, exactly:
- a process killed without running its exit handlers (SIGKILL, a power cut, ``os._exit``)
  loses the steps it had not flushed: at most ``flush_interval`` seconds (0.2 s by default)
  or ``max_buffer`` steps of them;
- a PostgreSQL crash (not a clean shutdown) may lose batches committed in the last
  ``3 x wal_writer_delay`` (0.6 s by default), the price of ``synchronous_commit = off``.
  The database stays consistent: a batch is all there or not there.
A normal exit (the atexit handler), an exception leaving ``jm.job(...)`` (it fails the job),
and ``jm.flush()`` write everything. Times are taken on the client when a step is logged.

The rows are identical to durable logging, ids included: step ids are reserved from the
table's sequence in blocks, and each batch is idempotent, so a batch retried after a broken
connection lands exactly once: a step's insert that finds a row with its step_id updates it
only when that row is this very step (same job, action and start time to the microsecond),
that is when an earlier attempt of the batch landed. A row of anyone else is never touched.

One step that cannot be written never holds back the others: a step whose job was deleted
in the meantime (``job_log_clear``), or whose id turns out to be taken by another row, is
dropped with a warning on the ``jobmon_core`` logger naming the step and job ids, and the
rest of the batch is written. Errors that concern the whole batch (connection, time-outs,
privileges) keep it queued for the next flush and are raised.

After ``fork()`` the child forgets the parent's queue (the parent writes it), its reserved
ids and its timer, and starts its own (:mod:`jobmon_core.forking`). Each process that queues
a step makes sure it flushes at its own exit: by ``atexit``, registered again in a child
because some forking frameworks clear the handlers (Airflow's task runner), and by a
``multiprocessing`` finalizer in a child of ``multiprocessing``, which ends with
``os._exit()`` and runs no ``atexit`` handler.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from . import forking
from .connection import LoggingConnection
from .errors import DatabaseError, JobNotFoundError, StepNotFoundError

logger = logging.getLogger("jobmon_core")

RESERVE_BLOCK = 256


@dataclass
class _Step:
    job_id: int
    step_id: int
    action: str
    start_time: datetime
    end_time: datetime | None = None
    status: str | None = None
    message: str | None = None
    written: bool = False  # the row exists in the database already

    @property
    def elapsed(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    def is_row(self, job_id: int, action: str, start_time: datetime) -> bool:
        """Whether a row with our step_id is this step (written by an earlier attempt)."""
        return (job_id, action, start_time) == (self.job_id, self.action, self.start_time)


class _Unwritable(Exception):
    """Raised inside a batch's transaction to roll it back: some steps cannot be written."""


@dataclass(frozen=True)
class _Dropped:
    """Steps of one job left out of a batch, and why."""

    job_id: int
    step_ids: tuple[int, ...]
    reason: str
    level: int


class StepBuffer:
    """Queued step writes of one schema, flushed in batches."""

    def __init__(
        self,
        connection: LoggingConnection,
        schema: str,
        *,
        flush_interval: float = 0.2,
        max_buffer: int = 1000,
    ) -> None:
        self._connection = connection
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._lock = threading.RLock()
        self._pending: dict[int, _Step] = {}
        self._known_jobs: set[int] = set()
        self._ids: list[int] = []
        self._timer: threading.Timer | None = None

        def t(name: str) -> sql.Identifier:
            return sql.Identifier(schema, name)

        self._reserve = sql.SQL("SELECT nextval({}::regclass) FROM generate_series(1, %s)").format(
            sql.Literal(t("job_detail_step_id_seq").as_string(None))
        )
        self._job_exists = sql.SQL("SELECT 1 FROM {} WHERE job_id = %s").format(t("job_log"))
        self._step_row = sql.SQL("SELECT job_id, start_time FROM {} WHERE step_id = %s").format(
            t("job_detail")
        )
        # A conflicting row is updated only when it is this very step, written by an earlier
        # attempt of the batch; anyone else's row is left alone (and the rowcount shows it).
        self._upsert = sql.SQL(
            "INSERT INTO {table} AS d (job_id, step_id, action, start_time, end_time,"
            " elapsed_time, status, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (step_id) DO UPDATE SET end_time = EXCLUDED.end_time,"
            " elapsed_time = EXCLUDED.elapsed_time, status = EXCLUDED.status,"
            " message = EXCLUDED.message"
            " WHERE (d.job_id, d.action, d.start_time)"
            " = (EXCLUDED.job_id, EXCLUDED.action, EXCLUDED.start_time)"
        ).format(table=t("job_detail"))
        self._jobs_found = sql.SQL("SELECT job_id FROM {} WHERE job_id = ANY(%s)").format(
            t("job_log")
        )
        self._rows_found = sql.SQL(
            "SELECT step_id, job_id, action, start_time FROM {} WHERE step_id = ANY(%s)"
        ).format(t("job_detail"))
        self._update = sql.SQL(
            "UPDATE {} SET end_time = %s, elapsed_time = %s, status = %s, message = %s"
            " WHERE step_id = %s"
        ).format(t("job_detail"))
        _buffers.add(self)
        forking.forget_in_child(self)

    def after_fork_in_child(self) -> None:
        """Start afresh in a child of ``fork()``: the queued steps are the parent's to write,
        the reserved ids the parent's to use, the timer's thread does not exist here, and
        the lock may have been held by a thread of the parent at the moment of the fork."""
        self._lock = threading.RLock()
        self._pending = {}
        self._ids = []
        self._timer = None

    def known_job(self, job_id: int) -> None:
        """A job this process created: steps of it need no existence check."""
        self._known_jobs.add(job_id)

    # -- queueing ---------------------------------------------------------------------------

    def add_step(self, job_id: int, action: str) -> int:
        with self._lock:
            if job_id not in self._known_jobs:
                found = self._connection.run(
                    lambda conn, _: conn.execute(self._job_exists, [job_id]).fetchone()
                )
                if found is None:
                    raise JobNotFoundError(f"no job with job_id {job_id}: add_job() first")
                self._known_jobs.add(job_id)
            if not self._ids:
                rows = self._connection.run(
                    lambda conn, _: conn.execute(self._reserve, [RESERVE_BLOCK]).fetchall()
                )
                self._ids = sorted((r[0] for r in rows), reverse=True)
            step = _Step(job_id, self._ids.pop(), action, datetime.now(UTC))
            self._pending[step.step_id] = step
            self._schedule()
            return step.step_id

    def update_step(self, step_id: int, status: str, message: str | None) -> int:
        """Queue a step's new status and message; return the step's job_id."""
        with self._lock:
            step = self._pending.get(step_id)
            if step is None:  # an older step: read it once, then update it in the batch
                row = self._connection.run(
                    lambda conn, _: conn.execute(self._step_row, [step_id]).fetchone()
                )
                if row is None:
                    raise StepNotFoundError(f"no step with step_id {step_id}: add_step() first")
                step = _Step(row[0], step_id, "", row[1], written=True)
                self._pending[step_id] = step
            step.end_time = datetime.now(UTC)
            step.status = status
            step.message = message
            self._schedule()
            return step.job_id

    def _schedule(self) -> None:
        _ensure_exit_flush()
        if len(self._pending) >= self.max_buffer:
            self.flush()
        elif self._timer is None:
            self._timer = threading.Timer(self.flush_interval, self._flush_quietly)
            self._timer.daemon = True
            self._timer.start()

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write every queued step now; return how many rows were written.

        Steps that cannot be written (their job was deleted, their id is taken) are dropped
        and reported on the ``jobmon_core`` logger; the others are written. An error that
        concerns the whole batch (the connection, a time-out) is raised and keeps it queued.
        """
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._pending:
                return 0
            batch = list(self._pending.values())
            dropped = self._connection.run(lambda conn, _: self._write(conn, batch))
            for step in batch:
                if self._pending.get(step.step_id) is step:
                    del self._pending[step.step_id]
        for report in dropped:
            logger.log(
                report.level,
                "pg-jobmon: dropped buffered step(s) %s of job %s: %s",
                ", ".join(map(str, report.step_ids)),
                report.job_id,
                report.reason,
            )
        return len(batch) - sum(len(report.step_ids) for report in dropped)

    def _write(self, conn: psycopg.Connection, batch: list[_Step]) -> list[_Dropped]:
        """Write ``batch`` in one transaction; if some steps cannot be written, find them,
        leave them out and write the rest. Return what was left out."""
        try:
            return self._write_batch(conn, batch)
        except (pg_errors.ForeignKeyViolation, _Unwritable):
            pass  # rolled back: find the culprits (a rare path, so a query more is fine)
        dropped = self._unwritable(conn, batch)
        left_out = {step_id for report in dropped for step_id in report.step_ids}
        try:
            vanished = self._write_batch(conn, [s for s in batch if s.step_id not in left_out])
        except (pg_errors.ForeignKeyViolation, _Unwritable):  # changed under us again
            raise DatabaseError(
                "buffered steps could not be written: their job was deleted or their "
                "step_id taken while the batch was being written; the next flush retries"
            ) from None
        return dropped + vanished

    def _write_batch(self, conn: psycopg.Connection, batch: list[_Step]) -> list[_Dropped]:
        """Write ``batch`` in one transaction; return the updates that found no row (their
        step or job was deleted since it was written), which change nothing."""
        inserts = [
            (s.job_id, s.step_id, s.action, s.start_time, s.end_time, s.elapsed, s.status,
             s.message)
            for s in batch if not s.written
        ]  # fmt: skip
        updates = [
            (s.end_time, s.elapsed, s.status, s.message, s.step_id) for s in batch if s.written
        ]
        with conn.transaction():
            # Transaction-local: nothing of it outlives the batch, pooled or not.
            conn.execute("SET LOCAL synchronous_commit = off")
            with conn.cursor() as cur:
                if inserts:
                    cur.executemany(self._upsert, inserts)
                    if cur.rowcount != len(inserts):  # a row of someone else holds an id
                        raise _Unwritable
                if updates:
                    cur.executemany(self._update, updates)
                    if cur.rowcount != len(updates):  # psycopg sums executemany's rowcounts
                        return self._vanished(conn, [s for s in batch if s.written])
        return []

    def _vanished(self, conn: psycopg.Connection, updated: list[_Step]) -> list[_Dropped]:
        """The updated steps whose row is gone (deleted with its job, e.g. by job_log_clear)."""
        rows = conn.execute(self._rows_found, [[s.step_id for s in updated]]).fetchall()
        present = {row[0] for row in rows}
        gone = [s for s in updated if s.step_id not in present]
        return _by_job(gone, "the step no longer exists (deleted with its job?)", False)

    def _unwritable(self, conn: psycopg.Connection, batch: list[_Step]) -> list[_Dropped]:
        """The steps of ``batch`` that cannot be inserted, by job: their job is gone, or
        their step_id is held by a row that is not them."""
        new = [s for s in batch if not s.written]
        found = conn.execute(self._jobs_found, [sorted({s.job_id for s in new})]).fetchall()
        jobs = {row[0] for row in found}
        rows = conn.execute(self._rows_found, [[s.step_id for s in new]]).fetchall()
        holders = {row[0]: row for row in rows}
        gone: list[_Step] = []
        taken: list[_Step] = []
        for step in new:
            holder = holders.get(step.step_id)
            if step.job_id not in jobs:
                self._known_jobs.discard(step.job_id)  # a later add_step must say so at once
                gone.append(step)
            elif holder is not None and not step.is_row(*holder[1:]):
                taken.append(step)
        return [
            *_by_job(gone, "the job no longer exists (deleted, e.g. by job_log_clear)", False),
            *_by_job(
                taken,
                "their step_id is held by another row of job_detail, left as it was: the "
                "step_id sequence was set back (setval), or rows were inserted with explicit "
                "step_ids, or ids were reserved by a copy of this process made without "
                "os.fork()",
                True,
            ),
        ]

    def _flush_quietly(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                return  # cancelled or replaced while it waited for the lock: flushed already
            self._timer = None
        try:
            self.flush()
        except Exception:  # the next flush (next step, job end, exit) reports it
            logger.warning(
                "pg-jobmon: a timed flush of buffered steps failed; the steps stay queued for "
                "the next flush (the next step, a job-level write, close() or exit)",
                exc_info=True,
            )


def _by_job(steps: Iterable[_Step], reason: str, error: bool) -> list[_Dropped]:
    by_job: dict[int, list[int]] = {}
    for step in steps:
        by_job.setdefault(step.job_id, []).append(step.step_id)
    level = logging.ERROR if error else logging.WARNING
    return [_Dropped(job, tuple(ids), reason, level) for job, ids in by_job.items()]


_buffers: weakref.WeakSet[StepBuffer] = weakref.WeakSet()
_exit_flush_pid = 0  # the process whose exit flushes the buffers


def _flush_all_at_exit() -> None:
    for buffer in list(_buffers):
        try:
            buffer.flush()
        except Exception:
            logger.warning("pg-jobmon: could not flush buffered steps at exit", exc_info=True)


def _ensure_exit_flush() -> None:
    """Make sure this process flushes the buffers when it exits (called on each queued step:
    a pid comparison). A child of ``fork()`` may have lost the handler of its parent:
    Airflow's task runner clears ``atexit`` in the child and runs only the handlers
    registered after the fork, and a ``multiprocessing`` child ends with ``os._exit()``,
    which runs its finalizers but no ``atexit`` handler."""
    global _exit_flush_pid
    pid = os.getpid()
    if _exit_flush_pid == pid:
        return
    _exit_flush_pid = pid
    atexit.unregister(_flush_all_at_exit)  # never twice in one process
    atexit.register(_flush_all_at_exit)
    process = sys.modules.get("multiprocessing.process")
    if process is not None and process.parent_process() is not None:
        from multiprocessing import util  # loaded already: this is a multiprocessing child

        util.Finalize(None, _flush_all_at_exit, exitpriority=0)
