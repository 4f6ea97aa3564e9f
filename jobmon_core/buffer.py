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
table's sequence in blocks, and each batch is idempotent (``ON CONFLICT``), so a batch
retried after a broken connection lands exactly once.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from .connection import LoggingConnection
from .errors import JobNotFoundError, StepNotFoundError

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
        self._upsert = sql.SQL(
            "INSERT INTO {} (job_id, step_id, action, start_time, end_time, elapsed_time,"
            " status, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (step_id) DO UPDATE SET end_time = EXCLUDED.end_time,"
            " elapsed_time = EXCLUDED.elapsed_time, status = EXCLUDED.status,"
            " message = EXCLUDED.message"
        ).format(t("job_detail"))
        self._update = sql.SQL(
            "UPDATE {} SET end_time = %s, elapsed_time = %s, status = %s, message = %s"
            " WHERE step_id = %s"
        ).format(t("job_detail"))
        _buffers.add(self)

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

    def update_step(self, step_id: int, status: str, message: str | None) -> None:
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

    def _schedule(self) -> None:
        if len(self._pending) >= self.max_buffer:
            self.flush()
        elif self._timer is None:
            self._timer = threading.Timer(self.flush_interval, self._flush_quietly)
            self._timer.daemon = True
            self._timer.start()

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write every queued step now; return how many rows were written."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._pending:
                return 0
            batch = list(self._pending.values())
            self._connection.run(lambda conn, _: self._write(conn, batch))
            for step in batch:
                if self._pending.get(step.step_id) is step:
                    del self._pending[step.step_id]
            return len(batch)

    def _write(self, conn: psycopg.Connection, batch: list[_Step]) -> None:
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
                try:
                    if inserts:
                        cur.executemany(self._upsert, inserts)
                    if updates:
                        cur.executemany(self._update, updates)
                except pg_errors.ForeignKeyViolation:
                    raise JobNotFoundError(
                        "a buffered step belongs to a job that no longer exists"
                    ) from None

    def _flush_quietly(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.flush()
        except Exception:  # the next flush (job end, exit) reports it
            logger.warning(
                "pg-jobmon: a timed flush of buffered steps failed; will retry", exc_info=True
            )


_buffers: weakref.WeakSet[StepBuffer] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for buffer in list(_buffers):
        try:
            buffer.flush()
        except Exception:
            logger.warning("pg-jobmon: could not flush buffered steps at exit", exc_info=True)
