"""The errors pg-jobmon raises.

Every error that leaves a public function is a :class:`JobmonError`, so callers can catch one
class. The subclasses say *what* went wrong in a way code can act on (a missing job is not an
outage), and every message says what to do next. Raw psycopg errors never leak out: they are
translated at the one place that talks to the database (:mod:`jobmon_core.connection`), and no
message ever carries the password of the connection string.
"""

from __future__ import annotations


class JobmonError(Exception):
    """Base class of every error raised by pg-jobmon."""


class InvalidArgumentError(JobmonError, ValueError):
    """A public function was called with a value it cannot use (empty name, wrong type...)."""


class NotFoundError(JobmonError, LookupError):
    """Something the call refers to does not exist."""


class JobNotFoundError(NotFoundError):
    """No ``job_log`` row has the given ``job_id``."""


class StepNotFoundError(NotFoundError):
    """No ``job_detail`` row has the given ``step_id``."""


class JobFinishedError(JobmonError):
    """The job already has an end time; closing, failing or cancelling it again is refused."""


class StatusTextError(JobmonError):
    """An alert level has no text in the status table, so a job cannot be given that status."""


class StatusTableError(InvalidArgumentError):
    """A ``status_table`` is not an existing table of the jobmon schema with the needed columns."""


class SchemaError(JobmonError):
    """The jobmon schema is missing, incomplete, or newer than this version of pg-jobmon."""


class SchemaNotInstalledError(SchemaError):
    """The jobmon tables are not there: run ``Jobmon.install()`` or ``jobmon install``."""


class DatabaseError(JobmonError):
    """The database refused a statement for a reason not covered by a more specific error."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class JobmonPermissionError(DatabaseError, PermissionError):
    """The database role lacks a privilege the call needs."""


class JobmonConnectionError(JobmonError, ConnectionError):
    """The logging database cannot be reached (or was lost and could not be reached again)."""


class JobmonTimeoutError(DatabaseError, TimeoutError):
    """The server gave up on a jobmon statement (``lock_timeout``, ``statement_timeout``).

    The statement was rolled back, so nothing of it was written and it may be retried; the
    logging connection stays usable.
    """


class LockTimeoutError(JobmonTimeoutError):
    """A jobmon statement waited longer than ``lock_timeout`` for a lock another session
    holds (a long transaction, the job's own transaction, ``LOCK``/``TRUNCATE``/``ALTER``)."""


class StatementTimeoutError(JobmonTimeoutError):
    """A jobmon statement ran longer than ``statement_timeout``."""
