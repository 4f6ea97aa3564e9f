"""The alert levels the notifiers last heard, kept in the schema (table ``job_alert_state``).

Why in the database: a check tells the ``jobmon_alerts_found`` plugins only the jobs whose
level flipped since the previous check. A state kept in one process's memory is lost with
the process, so every Airflow check task and every ``jobmon check --notify`` run started
from nothing and notified the same problems every time. Kept in the schema, every checker
(Airflow, cron, Nagios on several hosts) compares with the same levels.

Why one transaction around the check, the notifiers and the save: two checks at the same
moment must not both report a flip, and a flip the notifiers did not take must be reported
again. So the check locks the table (SHARE ROW EXCLUSIVE: plain reads go on, a second
check waits), runs ``check_job_status`` after it got the lock (so it never compares stale
alerts with a newer state), calls the notifiers, and writes the changes only when every
notifier took them. If the process dies in the middle (a Nagios time-out kills it), the
transaction rolls back and the next check reports the flip again: a notification is
repeated rather than lost.

Why a connection of its own: the transaction is held while the notifiers run (a webhook may
take seconds). On the shared logging connection it would hold that connection's lock, so
every other thread's logging would wait for the webhook, and a plugin logging through the
same :class:`Jobmon` would deadlock. It is opened at the first shared check and kept for the
next ones (a new connection costs more than the check: ~15 ms against ~2 ms), and closed by
:meth:`Jobmon.close`. A connection lost in the middle is replaced and the check run once
more, which may notify a flip twice, never lose one.

A second check that cannot get the lock within ``lock_timeout`` (another check is still
notifying) does not fail: it returns None, and the caller checks without the state and
tells the plugins no changes; the check holding the lock reports them, or the next one does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import psycopg
from psycopg import sql

from .alerts import Alert
from .checker import fetch_alerts, history_interval
from .connection import LoggingConnection
from .errors import LockTimeoutError
from .plugins import AlertChange, diff_alerts
from .session import SessionSettings
from .target import ConnectionTarget

logger = logging.getLogger("jobmon_core")

TABLE = "job_alert_state"

AlertState = dict[str | None, int]
"""The worst alert code per job name, problems only (see :func:`plugins.alert_state`)."""

Deliver = Callable[[list[Alert], list[AlertChange]], bool]
"""Tell the plugins; True when every one of them took the changes."""


class AlertMemory:
    """Checks of one schema that compare with, and update, ``job_alert_state``."""

    def __init__(self, target: ConnectionTarget, settings: SessionSettings, schema: str) -> None:
        self._target = target
        self._settings = settings
        self._schema = schema
        self._table = sql.Identifier(schema, TABLE)
        # prepare=False: cheap either way for one check per minute, and safe behind a pooler
        self._connection = LoggingConnection(target, prepare=False, settings=settings)

    def close(self) -> None:
        """Close the connection of the shared checks (the next one opens a new one)."""
        self._connection.close()

    def cancel(self) -> None:
        """Cancel the shared check running now, if any."""
        self._connection.cancel()

    def check(
        self, history: timedelta | None, deliver: Deliver
    ) -> tuple[list[Alert], AlertState] | None:
        """Check, tell ``deliver`` the alerts and the changes since the stored levels, and
        store the new levels if it took them. Returns the alerts and the stored state, or
        None when another check held the state longer than ``lock_timeout``."""
        history_interval(history)  # a bad window is refused before connecting
        try:
            return self._connection.run(lambda conn, _: self._check(conn, history, deliver))
        except LockTimeoutError as exc:
            logger.warning(
                "pg-jobmon: another check holds the alert state (%s); this check tells the "
                "plugins no changes, the other check or the next one reports them",
                exc,
            )
            return None

    def _check(
        self, conn: psycopg.Connection, history: timedelta | None, deliver: Deliver
    ) -> tuple[list[Alert], AlertState]:
        with conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._table))
            alerts = fetch_alerts(conn, self._schema, history)
            query = sql.SQL("SELECT job_name, alert_code FROM {}").format(self._table)
            previous: AlertState = dict(conn.execute(query))  # (job_name, alert_code) rows
            changes = diff_alerts(previous, alerts)
            if not deliver(alerts, changes):
                return alerts, previous  # the same changes are reported next time
            self._save(conn, changes)
            for change in changes:
                if change.recovered:
                    previous.pop(change.job_name, None)
                else:
                    previous[change.job_name] = change.current_code
            return alerts, previous

    def _save(self, conn: psycopg.Connection, changes: list[AlertChange]) -> None:
        """Write the jobs that changed: recovered ones lose their row, others get their new
        code (rows of jobs that did not change keep their ``changed_at``)."""
        if not changes:
            return
        names = [c.job_name for c in changes]
        conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE job_name = ANY(%(names)s) OR (job_name IS NULL AND %(null)s)"
            ).format(self._table),
            {"names": [n for n in names if n is not None], "null": None in names},
        )
        problems = [c for c in changes if not c.recovered]
        if problems:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (job_name, alert_code)"
                    " SELECT * FROM unnest(%s::text[], %s::integer[])"
                ).format(self._table),
                [[c.job_name for c in problems], [c.current_code for c in problems]],
            )
