"""Context managers: the pythonic way to log a job and its steps.

    with jm.job("nightly load", conn=work) as job:
        with job.step("copy rows") as step:
            step.message = f"{copy_rows(work)} rows"
        with job.step("analyze"):
            analyze(work)

A clean exit closes the step ``OK`` and the job ``OK``. An exception marks the step
``CRITICAL`` with ``<ExceptionType>: <text>`` as its message, fails the job (level 3) and
always propagates. If the logging itself fails while the user's exception is on its way
out, the user's exception still wins: the logging error is attached to it as a note and
logged, never raised in its place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec

from . import validation
from .errors import InvalidArgumentError, JobmonError

if TYPE_CHECKING:
    import psycopg

    from .jobmon import Jobmon

logger = logging.getLogger("jobmon_core")
_P = ParamSpec("_P")

STEP_OK = "OK"
STEP_FAILED = "CRITICAL"
FIRST_STEP_MISSING = "EXCEPTION before first step logged"  # upstream's wording
BETWEEN_STEPS = "EXCEPTION outside a step"


def describe(exc: BaseException) -> str:
    """``ValueError: boom`` (just ``ValueError`` when it has no text); NULs and lone
    surrogates (undecodable bytes of a file name...) made visible, so it can be stored."""
    text = str(exc).strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return validation.storable(described)


class Step:
    """One logged step. Set ``status`` or ``message`` inside the block to change what is
    recorded on a clean exit (defaults: ``OK`` and no message)."""

    def __init__(self, job: Job, action: str) -> None:
        self.job = job
        self.action = action
        self.step_id: int | None = None
        self.status = STEP_OK
        self.message: str | None = None

    def __repr__(self) -> str:
        return f"<Step {self.step_id} {self.action!r} of job {self.job.job_id}>"

    def update(self, status: str, message: str | None = None) -> None:
        """Record an intermediate status now (a later update overwrites it, as upstream)."""
        self.job.jobmon.update_step(self._require_started(), status, message)

    def __enter__(self) -> Step:
        if self.step_id is not None:
            raise InvalidArgumentError(f"step {self.action!r} was already entered once")
        self.step_id = self.job.jobmon.add_step(self.job._require_started(), self.action)
        self.job._steps += 1  # counted once logged: a refused action logged no step
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.step_id is not None
        if exc is None:
            try:
                self.job.jobmon.update_step(self.step_id, self.status, self.message)
            except InvalidArgumentError as bad:  # a status or message that cannot be stored:
                self.job._recorded = bad  # the step must not stay open
                update = self.job.jobmon.update_step
                log_quietly(bad, update, self.step_id, STEP_FAILED, describe(bad))
                raise
            return
        self.job._recorded = exc
        failure = self.job.failure_text(exc)
        log_quietly(exc, self.job.jobmon.update_step, self.step_id, STEP_FAILED, failure)

    def _require_started(self) -> int:
        if self.step_id is None:
            raise InvalidArgumentError("use the step as a context manager: with job.step(...)")
        return self.step_id


class Job:
    """One logged run of a job; ``with jm.job(name) as job`` adds it and finishes it."""

    def __init__(self, jobmon: Jobmon, name: str, conn: psycopg.Connection | None) -> None:
        self.jobmon = jobmon
        self.name = name
        self.conn = conn
        self.job_id: int | None = None
        self.finished = False
        self._steps = 0
        self._recorded: BaseException | None = None
        self.failure_text: Callable[[BaseException], str] = describe
        """The message of a step failed by an exception (``job_log_clear`` sets upstream's
        ``ERROR: <message>``)."""

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self.name!r}>"

    def step(self, action: str) -> Step:
        """A step of this job, logged when its ``with`` block is entered."""
        self._require_started()
        return Step(self, action)

    def close(self) -> None:
        """Finish the job as successful now (instead of at the end of the block)."""
        self.jobmon.close_job(self._require_started())
        self.finished = True

    def fail(self, level: int = 3) -> None:
        """Finish the job at alert ``level`` now (2 for a warning, 3 critical...)."""
        self.jobmon.fail_job(self._require_started(), level)
        self.finished = True

    def __enter__(self) -> Job:
        if self.job_id is not None:
            raise InvalidArgumentError(f"job {self.name!r} was already entered once")
        self.job_id = self.jobmon.add_job(self.name, conn=self.conn)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.finished:
            return
        if exc is None:
            self.close()
            return
        self.finished = True
        if exc is not self._recorded:
            log_quietly(exc, self._record_stray, exc)
        log_quietly(exc, self.fail, 3)

    def _record_stray(self, exc: BaseException) -> None:
        """An exception raised outside any step still leaves a step that says what it was."""
        action = BETWEEN_STEPS if self._steps else FIRST_STEP_MISSING
        step_id = self.jobmon.add_step(self._require_started(), action)
        self.jobmon.update_step(step_id, STEP_FAILED, self.failure_text(exc))

    def _require_started(self) -> int:
        if self.job_id is None:
            raise InvalidArgumentError("use the job as a context manager: with jm.job(...)")
        return self.job_id


def log_quietly(
    user_exc: BaseException, call: Callable[_P, object], *args: _P.args, **kwargs: _P.kwargs
) -> None:
    """Log while ``user_exc`` propagates; a logging failure must not replace it."""
    try:
        call(*args, **kwargs)
    except JobmonError as log_exc:
        note = f"pg-jobmon could not log this failure: {log_exc}"
        user_exc.add_note(note)
        logger.warning(note)
