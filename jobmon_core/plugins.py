"""Plugins: the hooks pg-jobmon calls, and how plugins are found and called.

A plugin is any object (or module) with functions named like the hooks of
:class:`JobmonSpec`, marked with :data:`hookimpl`. Register one in code::

    from jobmon_core.plugins import get_plugin_manager, hookimpl

    class Pager:
        @hookimpl
        def jobmon_job_finished(self, job_id, status, alert_code):
            if alert_code >= 3:
                page(f"job {job_id} ended {status}")

    get_plugin_manager().register(Pager())

or ship it in a package, with an entry point in the ``pg_jobmon`` group, which every
process loads on first use of :func:`get_plugin_manager`::

    [project.entry-points.pg_jobmon]
    my_notifier = "my_package.jobmon_plugin"

Every hook is a notification: return values are ignored, and an exception raised by one
plugin is logged as a warning and reaches neither the writer, nor the check, nor the other
plugins. Logging is there to record a user's job; it must never be what breaks it. That is
why :class:`PluginCaller` calls the implementations one at a time instead of through
pluggy's ``pm.hook.<name>(...)``, which stops at the first exception.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from .alerts import OK, Alert
from .errors import InvalidArgumentError

logger = logging.getLogger("jobmon_core")

PROJECT = "pg_jobmon"
"""The pluggy project name, which is also the entry point group plugins are loaded from."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class AlertChange:
    """A job whose alert level flipped between two checks.

    ``previous_code`` and ``current_code`` are alert codes (1 OK, 2 WARNING, 3 CRITICAL, or
    a custom code above 3), each the job's worst at its check; ``alert`` is the job's worst
    alert now, or None when the problem went away (the job recovered to OK).
    """

    job_name: str | None
    previous_code: int
    current_code: int
    alert: Alert | None

    @property
    def recovered(self) -> bool:
        """The job has no problem any more."""
        return self.current_code <= OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``alert`` as :meth:`Alert.to_dict` or None."""
        return {
            "job_name": self.job_name,
            "previous_code": self.previous_code,
            "current_code": self.current_code,
            "alert": None if self.alert is None else self.alert.to_dict(),
        }


class JobmonSpec:
    """The hooks pg-jobmon calls.

    Arguments are always passed by keyword, and an implementation receives only those it
    names (pluggy matches them by name), so declare just what you use: new arguments may be
    added to a hook later without breaking existing plugins.

    Every hook is called after the event it reports was committed to the log tables, from
    the thread that caused it, and the caller waits for it: keep implementations quick, or
    hand the work to a thread or queue of your own. Return values are ignored. An exception
    raised by an implementation is caught and logged as a warning naming the plugin; it
    never reaches the job, the writer, the check, or the other plugins. Wrapper
    implementations (``wrapper=True``, ``hookwrapper=True``) are not supported and are
    skipped, with a warning.
    """

    @hookspec
    def jobmon_job_started(self, job_id: int, job_name: str, schema: str) -> None:
        """Called after a new job run was logged (``add_job`` committed its ``job_log`` row).

        Not called when ``add_job`` with a ``run_key`` returned a job that already existed.

        :param job_id: The new ``job_log.job_id``.
        :param job_name: The name as the caller gave it (the database stores it upper-cased).
        :param schema: The jobmon schema the job was logged in.
        :return: Ignored.

        An exception raised here is caught and logged as a warning; the job is logged and
        goes on regardless.
        """

    @hookspec
    def jobmon_step_finished(
        self, job_id: int, step_id: int, status: str, message: str | None, schema: str
    ) -> None:
        """Called after a step got a status (``update_step`` committed; with
        ``Jobmon(buffered=True)``, when the update is queued: it is committed at the next
        flush, at the latest when the job finishes).

        Called on every update of every step, including intermediate ones
        (``step.update(...)``), so this is the hook where speed matters most.

        :param job_id: The ``job_log.job_id`` of the step's job (read in the same round
            trip as the update, or known to the buffer).
        :param step_id: The ``job_detail.step_id``.
        :param status: The step's status text as stored (``OK``, ``CRITICAL``, or any text).
        :param message: The step's message as stored, or None (stored as NULL).
        :param schema: The jobmon schema the step was logged in.
        :return: Ignored.

        An exception raised here is caught and logged as a warning; the step stays logged.
        """

    @hookspec
    def jobmon_job_finished(self, job_id: int, status: str, alert_code: int, schema: str) -> None:
        """Called after a job run was closed, failed or cancelled (and that was committed).

        :param job_id: The ``job_log.job_id`` of the finished run.
        :param status: The status text stored in ``job_log.status`` (``OK``, ``WARNING``,
            ``CRITICAL`` or the text of a custom level or status table).
        :param alert_code: The status's alert code: 1 for a close, the level of a failure,
            3 for a cancellation.
        :param schema: The jobmon schema of the job.
        :return: Ignored.

        An exception raised here is caught and logged as a warning; the job stays finished.
        """

    @hookspec
    def jobmon_alerts_found(
        self, alerts: list[Alert], changes: list[AlertChange], schema: str
    ) -> None:
        """Called after each check of the job log (``check_job_status``), healthy or not.

        :param alerts: Every row of the check, worst first; a single OK row (``job_name``
            None) when every job is healthy.
        :param changes: The jobs whose worst alert code flipped since the previous check
            (a new problem, a worse or better one, or a recovery to OK), as
            :func:`diff_alerts` computes them; empty when nothing changed or when there is
            no previous check to compare with. Notifiers that must not repeat themselves on
            every check act only on ``changes``.
        :param schema: The jobmon schema that was checked.
        :return: Ignored.

        An exception raised here is caught and logged as a warning, and the check returns
        its alerts regardless. The caller may then report the same ``changes`` again at the
        next check, so that a notification that failed is retried.
        """


def alert_state(alerts: list[Alert]) -> dict[str | None, int]:
    """The worst alert code per job name, problems only (the OK row is left out).

    This is what to keep between checks, and to pass as ``previous`` to
    :func:`diff_alerts` at the next one. A healthy check gives ``{}``.
    """
    state: dict[str | None, int] = {}
    for alert in alerts:
        if not alert.is_ok:
            state[alert.job_name] = max(alert.alert_code, state.get(alert.job_name, OK))
    return state


def diff_alerts(previous: dict[str | None, int], alerts: list[Alert]) -> list[AlertChange]:
    """The jobs whose worst alert code differs between ``previous`` (an :func:`alert_state`)
    and the check ``alerts``, sorted by job name.

    A job name absent from either side counts as OK (1): a job that appears with a problem
    is a change from 1, one that disappears is a recovery to 1 (``alert`` None). Only the
    worst code per job counts, so a second, milder alert of an already alerting job is no
    change.
    """
    current = alert_state(alerts)
    worst_alert: dict[str | None, Alert] = {}
    for alert in alerts:  # the first alert at a job's worst code (checks come worst first)
        if not alert.is_ok and alert.alert_code == current[alert.job_name]:
            worst_alert.setdefault(alert.job_name, alert)
    changes = []
    for name in sorted(set(previous) | set(current), key=lambda n: (n is None, n or "")):
        before, now = previous.get(name, OK), current.get(name, OK)
        if before != now:
            changes.append(AlertChange(name, before, now, worst_alert.get(name)))
    return changes


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    """Load the ``pg_jobmon`` entry points one by one, so that one broken plugin (an import
    error, a hook with a misspelled argument) is skipped without losing the others."""
    try:
        names = sorted({ep.name for ep in entry_points(group=PROJECT)})
    except Exception:  # a broken installed distribution's metadata
        logger.warning("cannot list the pg_jobmon plugins; going on without any", exc_info=True)
        return
    for name in names:
        try:
            manager.load_setuptools_entrypoints(PROJECT, name=name)
        except Exception as exc:
            if manager.has_plugin(name):  # pluggy < 1.6 could leave it half registered
                manager.unregister(name=name)
            logger.warning(
                "pg_jobmon plugin %r failed to load, going on without it: %s: %s",
                name,
                type(exc).__name__,
                exc,
            )


def new_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with pg-jobmon's hooks and, by default, the installed plugins
    (the ``pg_jobmon`` entry points). For tests and tools that want plugins of their own
    rather than the process-wide set of :func:`get_plugin_manager`."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(JobmonSpec)
    if load_entry_points:
        _load_entry_points(manager)
    return manager


_manager: pluggy.PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use (once, even when threads race
    for it), with the installed plugins loaded. Every :class:`~jobmon_core.Jobmon` uses it
    unless given a manager of its own."""
    global _manager
    manager = _manager
    if manager is not None:
        return manager
    with _manager_lock:
        if _manager is None:
            _manager = new_plugin_manager()
        return _manager


_HOOKS = ("jobmon_job_started", "jobmon_step_finished", "jobmon_job_finished")
_ALERTS_HOOK = "jobmon_alerts_found"


class PluginCaller:
    """Calls the hooks for one jobmon schema: each implementation on its own, each isolated.

    When no plugin implements a hook, a call costs a copy of an empty list, because the
    writer makes one on every step. Methods return True when every implementation ran
    without raising (also when there was none), False when one of them failed.
    """

    def __init__(self, manager: pluggy.PluginManager, schema: str) -> None:
        if not isinstance(manager, pluggy.PluginManager) or manager.project_name != PROJECT:
            raise InvalidArgumentError(
                f"plugins must be a pluggy.PluginManager of project {PROJECT!r}: "
                "use jobmon_core.plugins.new_plugin_manager()"
            )
        if not _has_spec(manager):
            try:
                manager.add_hookspecs(JobmonSpec)
            except pluggy.PluginValidationError as exc:
                raise InvalidArgumentError(
                    f"a plugin does not match pg-jobmon's hooks: {exc}"
                ) from None
        self.manager = manager
        self.schema = schema
        # pluggy keeps one HookCaller per hook for the manager's lifetime: look them up once
        self._callers = {name: getattr(manager.hook, name) for name in (*_HOOKS, _ALERTS_HOOK)}
        self._warned_wrappers: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"PluginCaller(schema={self.schema!r}, plugins={self.manager.list_name_plugin()})"

    def _call(self, hook_name: str, kwargs: dict[str, Any]) -> bool:
        impls = self._callers[hook_name].get_hookimpls()
        if not impls:
            return True
        kwargs["schema"] = self.schema
        delivered = True
        for impl in reversed(impls):  # pluggy's own order: tryfirst, then last registered first
            if impl.wrapper or impl.hookwrapper:
                self._skip_wrapper(impl.plugin_name, hook_name)
                continue
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
                logger.debug("traceback of plugin %s", impl.plugin_name, exc_info=True)
        return delivered

    def _skip_wrapper(self, plugin_name: str, hook_name: str) -> None:
        if (plugin_name, hook_name) not in self._warned_wrappers:
            self._warned_wrappers.add((plugin_name, hook_name))
            logger.warning(
                "pg-jobmon plugin %s implements %s as a wrapper, which is not supported: skipped",
                plugin_name,
                hook_name,
            )

    def job_started(self, job_id: int, job_name: str) -> bool:
        """After ``add_job`` committed a new run."""
        return self._call("jobmon_job_started", {"job_id": job_id, "job_name": job_name})

    def step_finished(self, step_id: int, status: str, message: str | None, job_id: int) -> bool:
        """After ``update_step`` committed (or was queued, buffered), with the step's job."""
        return self._call(
            "jobmon_step_finished",
            {"job_id": job_id, "step_id": step_id, "status": status, "message": message},
        )

    def job_finished(self, job_id: int, status: str, alert_code: int) -> bool:
        """After a close, fail or cancel committed, with the stored status and its code."""
        return self._call(
            "jobmon_job_finished", {"job_id": job_id, "status": status, "alert_code": alert_code}
        )

    def hears_alerts(self) -> bool:
        """Whether any plugin implements ``jobmon_alerts_found``: without one, a check has
        nobody to tell about its changes, so it need not compare with (or keep) a state."""
        return bool(self._callers[_ALERTS_HOOK].get_hookimpls())

    def alerts_found(self, alerts: list[Alert], changes: list[AlertChange]) -> bool:
        """After a check. False when a plugin failed, so that the caller can keep its
        previous :func:`alert_state` and report the same changes again next time."""
        return self._call(_ALERTS_HOOK, {"alerts": alerts, "changes": changes})


def _has_spec(manager: pluggy.PluginManager) -> bool:
    caller = getattr(manager.hook, _ALERTS_HOOK, None)
    return caller is not None and caller.has_spec()
