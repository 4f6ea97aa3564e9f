"""Plugins: the hooks pg-jobmon calls, and how they are found and called.

A plugin is any object (or module) with methods named like the hooks below, marked with
:data:`hookimpl`. Register one in code with ``get_plugin_manager().register(obj)``, or ship
it in a package with an entry point in the ``pg_jobmon`` group::

    [project.entry-points.pg_jobmon]
    my_notifier = "my_package.jobmon_plugin"

Every hook is a notification: return values are ignored, and an exception raised by one
plugin is logged as a warning and never reaches the writer, the check, or other plugins.
Logging must never be what breaks a user's job.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from .alerts import OK, Alert

logger = logging.getLogger("jobmon_core")

PROJECT = "pg_jobmon"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class AlertChange:
    """A job whose alert level flipped between two checks.

    ``previous_code`` and ``current_code`` are alert codes (1 OK, 2 WARNING, 3 CRITICAL...);
    ``alert`` is the job's worst alert now, or None when it recovered to OK.
    """

    job_name: str | None
    previous_code: int
    current_code: int
    alert: Alert | None

    @property
    def recovered(self) -> bool:
        return self.current_code <= OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "previous_code": self.previous_code,
            "current_code": self.current_code,
            "alert": None if self.alert is None else self.alert.to_dict(),
        }


class JobmonSpec:
    """The hooks. Arguments are passed by keyword; implement only the ones you need, and
    only the arguments you need (pluggy matches them by name)."""

    @hookspec
    def jobmon_job_started(self, job_id: int, job_name: str, schema: str) -> None:
        """A job run was logged (``add_job`` committed).

        :param job_id: the new ``job_log.job_id``.
        :param job_name: the name as given (the database stores it upper-cased).
        :param schema: the jobmon schema it was logged in.
        """

    @hookspec
    def jobmon_step_finished(
        self, step_id: int, status: str, message: str | None, schema: str
    ) -> None:
        """A step got its status (``update_step`` committed). Called for every update,
        so keep it cheap: the writer waits for it.

        :param step_id: the ``job_detail.step_id``.
        :param status: the step's status text (``OK``, ``CRITICAL``, anything).
        :param message: the step's message, or None.
        """

    @hookspec
    def jobmon_job_finished(self, job_id: int, status: str, alert_code: int, schema: str) -> None:
        """A job run was closed, failed or cancelled (and that was committed).

        :param status: the status text stored in ``job_log.status``.
        :param alert_code: its code: 1 for a successful close, the level for a failure.
        """

    @hookspec
    def jobmon_alerts_found(
        self, alerts: list[Alert], changes: list[AlertChange], schema: str
    ) -> None:
        """A check ran.

        :param alerts: every row of ``check_job_status``, worst first (one OK row when
            healthy).
        :param changes: the jobs whose level flipped since the previous check of the same
            state (empty when nothing changed). Notifiers that should not repeat themselves
            act only on ``changes``.
        """


def alert_state(alerts: list[Alert]) -> dict[str, int]:
    """The worst code per job name (problems only), to compare with the next check."""
    state: dict[str, int] = {}
    for alert in alerts:
        if alert.job_name is not None and not alert.is_ok:
            state[alert.job_name] = max(alert.alert_code, state.get(alert.job_name, OK))
    return state


def diff_alerts(previous: dict[str, int], alerts: list[Alert]) -> list[AlertChange]:
    """The flips between a stored state and a new check (absent names are OK)."""
    current = alert_state(alerts)
    worst_alert: dict[str, Alert] = {}
    for alert in alerts:
        if alert.job_name is not None and alert.alert_code == current.get(alert.job_name):
            worst_alert.setdefault(alert.job_name, alert)
    changes = []
    for name in sorted(set(previous) | set(current)):
        before, now = previous.get(name, OK), current.get(name, OK)
        if before != now:
            changes.append(AlertChange(name, before, now, worst_alert.get(name)))
    return changes


_manager: pluggy.PluginManager | None = None
_manager_lock = threading.Lock()


def new_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with pg-jobmon's hooks, and (by default) the installed plugins."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(JobmonSpec)
    if load_entry_points:
        try:
            manager.load_setuptools_entrypoints(PROJECT)
        except Exception:
            logger.warning("a pg_jobmon plugin failed to load; going on without it", exc_info=True)
    return manager


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created (and entry points loaded) on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = new_plugin_manager()
        return _manager


class PluginCaller:
    """Calls the hooks for the writer and the check, one plugin at a time, each isolated.

    When no plugin implements a hook, a call costs one attribute lookup and a list check.
    """

    def __init__(self, manager: pluggy.PluginManager, schema: str) -> None:
        self.manager = manager
        self._schema = schema

    def _call(self, hook_name: str, **kwargs: Any) -> bool:
        """Call every implementation; return False if any of them raised."""
        hook = getattr(self.manager.hook, hook_name)
        impls = hook.get_hookimpls()
        if not impls:
            return True
        kwargs["schema"] = self._schema
        delivered = True
        for impl in impls:
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:
                delivered = False
                logger.warning(
                    "pg-jobmon plugin %s failed in %s: %s: %s",
                    impl.plugin_name,
                    hook_name,
                    type(exc).__name__,
                    exc,
                )
        return delivered

    def job_started(self, job_id: int, job_name: str) -> None:
        self._call("jobmon_job_started", job_id=job_id, job_name=job_name)

    def step_finished(self, step_id: int, status: str, message: str | None) -> None:
        self._call("jobmon_step_finished", step_id=step_id, status=status, message=message)

    def job_finished(self, job_id: int, status: str, alert_code: int) -> None:
        self._call("jobmon_job_finished", job_id=job_id, status=status, alert_code=alert_code)

    def alerts_found(self, alerts: list[Alert], changes: list[AlertChange]) -> bool:
        """Tell the plugins; False when one of them failed (so the caller can keep its old
        state and report the same changes again next time)."""
        return self._call("jobmon_alerts_found", alerts=alerts, changes=changes)
