"""The orchestrator run model, shared by the Airflow and Prefect skins.

One run of a flow or DAG is one job, keyed by the orchestrator's own id of the run
(``add_job(run_key=...)``); each task try is one step of it, keyed by the try
(``add_step(step_key=...)``). Keys make every write a get-or-create, so whichever process
logs first (a worker thread, a runner process, an event follower) creates the row and the
others find it: a run is never logged twice.

Logging must never break or stall the run it watches: :class:`RunGuard` turns every failure
into one warning, and after a failure the next call would hit again (the database is
unreachable, the schema missing or older than this package, a privilege missing) it skips
logging for :data:`OUTAGE_BACKOFF` seconds, so an outage costs one connect timeout, not
one per task.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from .errors import (
    DatabaseError,
    JobFinishedError,
    JobmonConnectionError,
    JobmonPermissionError,
    SchemaError,
)
from .forking import forget_in_child
from .jobmon import Jobmon

STEP_OK, STEP_RETRY, STEP_FAILED, STEP_SKIPPED = "OK", "WARNING", "CRITICAL", "SKIPPED"

OUTAGE_BACKOFF = 60.0
"""Seconds a process skips logging after it could not reach the jobmon database, or found
it not set up for logging."""

UNDEFINED_FUNCTION = "42883"
"""SQLSTATE of a call to a function the schema does not have (yet): an older schema."""

SCHEMA_PROBLEM = (
    "the jobmon schema is missing or older than this pg-jobmon (run `jobmon install` on the "
    "database and schema jobmon logs into)"
)
PRIVILEGE_PROBLEM = (
    "the jobmon role lacks a privilege (grant it the writer role: see "
    "`jobmon install --print-grants`)"
)


def set_up_problem(exc: BaseException) -> str | None:
    """What is wrong with the jobmon set-up if ``exc`` says so (every later call of this
    process would fail the same way), else None (a failure of this one call)."""
    if isinstance(exc, SchemaError) or (
        isinstance(exc, DatabaseError) and exc.sqlstate == UNDEFINED_FUNCTION
    ):
        return SCHEMA_PROBLEM
    if isinstance(exc, JobmonPermissionError):
        return PRIVILEGE_PROBLEM
    return None


def server_message(exc: BaseException) -> str:
    """The server's own message behind a jobmon error, without the ``LINE 1: <statement>
    ^`` context psycopg adds to its text; the error's text if it did not come from a
    server."""
    diag = getattr(exc.__cause__, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return primary if isinstance(primary, str) and primary else str(exc)


class RunGuard:
    """Runs logging calls so that none can fail the caller: one per logging destination
    and process (the back-off is the destination's, shared by all its threads)."""

    def __init__(self, logger: logging.Logger, *, backoff: float = OUTAGE_BACKOFF) -> None:
        self.log = logger
        self.backoff = backoff
        self._down_until = 0.0
        self._lock = threading.Lock()
        forget_in_child(self)

    def after_fork_in_child(self) -> None:
        """A forked child gets a fresh lock (one a parent's thread held at the fork would
        stay held); the back-off stays: the outage is the child's too."""
        self._lock = threading.Lock()

    @property
    def in_backoff(self) -> bool:
        """Still in the back-off after an outage: callers skip without waiting."""
        return time.monotonic() < self._down_until

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        """Turn any failure of the block into one warning; an outage, or a set-up problem
        the next call would hit again, also starts the back-off."""
        try:
            yield
        except JobmonConnectionError as exc:
            self.back_off(what, "cannot reach the jobmon database", str(exc))
        except JobFinishedError:
            self.log.debug("pg-jobmon: %s was logged already", what)
        except Exception as exc:
            problem = set_up_problem(exc)
            if problem is None:
                self.log.warning(
                    "pg-jobmon: could not log %s: %s: %s", what, type(exc).__name__, exc
                )
            else:
                self.back_off(what, problem, server_message(exc))

    def back_off(self, what: str, problem: str, detail: str) -> None:
        with self._lock:
            warn = not self.in_backoff  # threads failing at once: one warning
            self._down_until = time.monotonic() + self.backoff
        if warn:
            self.log.warning(
                "pg-jobmon: %s; not logging %s (and skipping jobmon logging in this process "
                "for %.0f s): %s",
                problem,
                what,
                self.backoff,
                detail,
            )


def close_open_steps(jobmon: Jobmon, job_id: int, status: str, message: str) -> int:
    """Close the steps of a job still open (tries whose end no hook reported: a crash, a
    cancellation, a task killed with its process); return how many. Finished steps are left
    as they are."""
    closed = 0
    for step in jobmon.show_detail(job_id):
        if step.end_time is None:
            jobmon.update_step(step.step_id, status, message)
            closed += 1
    return closed


def finish_step_once(
    jobmon: Jobmon, job_id: int, step_key: str, action: str, status: str, message: str | None
) -> bool:
    """Get or create the keyed step and finish it, unless it has finished already (a second
    observer of the same try, e.g. an event follower next to the hooks, must not rewrite
    what the first one wrote); return whether this call finished it."""
    step_id = jobmon.add_step(job_id, action, step_key=step_key)
    for step in jobmon.show_detail(job_id):
        if step.step_id == step_id and step.end_time is not None:
            return False
    jobmon.update_step(step_id, status, message)
    return True
