"""Where a Prefect process logs: a block, else ``JOBMON_DSN``, else libpq's variables.

The order, for every hook, task and the follower of a process:

1. the block named by the caller (``block="prod"``), else by ``JOBMON_PREFECT_BLOCK``;
2. else ``JOBMON_DSN`` (and ``JOBMON_SCHEMA``, default ``jobmon``), which also reaches a
   runner process that has no block API (a crash hook runs there);
3. else libpq's own variables (``PGHOST``, ``PGDATABASE``...) and ``.pgpass``.

Each destination gets one :class:`~jobmon_core.Jobmon` per process (its logging connection
is opened on first use and shared by the task runner's threads) and one
:class:`~jobmon_core.runs.RunGuard`, whose back-off makes an outage cost one connect timeout
(5 s at most by default) and one warning, not one per task. Both live until the process
exits; :func:`close_all` ends them sooner.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from dataclasses import dataclass, field

from jobmon_core import InvalidArgumentError, Jobmon
from jobmon_core.forking import forget_in_child
from jobmon_core.jobmon import DEFAULT_SCHEMA
from jobmon_core.runs import RunGuard

from .background import DRAIN_TIMEOUT, writer
from .blocks import APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT, load_block, with_network_timeouts

log = logging.getLogger("jobmon_prefect")

BLOCK_ENV = "JOBMON_PREFECT_BLOCK"
DSN_ENV = "JOBMON_DSN"
SCHEMA_ENV = "JOBMON_SCHEMA"


_serials = itertools.count(1)


@dataclass
class Destination:
    """One place to log, as this process reaches it. ``serial`` tells it apart from every
    other destination this process has had (ids the hooks remember are kept per serial, so
    none outlives the session it was read with)."""

    guard: RunGuard
    jobmon: Jobmon | None = None
    serial: int = field(default_factory=lambda: next(_serials))


_destinations: dict[tuple[str, ...], Destination] = {}
_lock = threading.Lock()


class _ForkReset:
    """Gives a forked child a fresh lock (one held by a parent's thread at the fork would
    stay held); the destinations stay, their sessions check the pid themselves."""

    def after_fork_in_child(self) -> None:
        global _lock
        _lock = threading.Lock()


_fork_reset = _ForkReset()
forget_in_child(_fork_reset)


def _key(block: str | None) -> tuple[str, ...]:
    name = block or os.environ.get(BLOCK_ENV) or ""
    if name:
        return ("block", name)
    return ("env", os.environ.get(DSN_ENV, ""), os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA)


def destination(block: str | None = None) -> Destination:
    """The destination of ``block`` (None: the environment), made once per process.

    Its ``jobmon`` is None when a named block could not be loaded (the guard has warned and
    backs off; the next call after the back-off tries again)."""
    key = _key(block)
    with _lock:
        found = _destinations.get(key)
        if found is None:
            found = _destinations[key] = Destination(RunGuard(log))
    if found.jobmon is None and not found.guard.in_backoff:
        jobmon = _open(key, found)
        with _lock:
            if found.jobmon is None:
                found.jobmon = jobmon
            elif jobmon is not None:  # another thread won: keep its session
                jobmon.close()
    return found


def _open(key: tuple[str, ...], found: Destination) -> Jobmon | None:
    """The destination's Jobmon, or None after one warning and the back-off: no such block,
    no Prefect API to load it from, a DSN or schema name that cannot be used are set-up
    problems every later call would hit again."""
    try:
        return _new_jobmon(key)
    except Exception as exc:
        if key[0] == "block":
            problem = (
                f"the jobmon block {key[1]!r} cannot be loaded (save a JobmonPostgres block of "
                "that name, or unset JOBMON_PREFECT_BLOCK to log to JOBMON_DSN)"
            )
        else:
            problem = "JOBMON_DSN or JOBMON_SCHEMA cannot be used"
        found.guard.back_off("Prefect runs", problem, f"{type(exc).__name__}: {exc}")
        return None


@atexit.register
def close_all(timeout: float = DRAIN_TIMEOUT) -> None:
    """Write what the hooks queued (at most ``timeout`` seconds), then close every logging
    session of this process (at exit, or in tests between servers).

    When the writes did not finish, the writer thread may be stuck inside one, holding its
    session's lock (a network that died mid-write): closing would wait for that lock. The
    running statements are cancelled instead and the sessions left to the process's exit."""
    drained = writer.drain(timeout)
    with _lock:
        found = list(_destinations.values())
        _destinations.clear()
    if not drained and any(each.jobmon is not None for each in found):
        log.warning(
            "pg-jobmon: the jobmon writer is still busy; cancelling its statement and "
            "leaving its sessions to the process's exit instead of waiting to close them"
        )
    for each in found:
        if each.jobmon is None:
            continue
        try:
            if drained:
                each.jobmon.close()
            else:
                each.jobmon.cancel()
        except Exception as exc:
            log.debug("pg-jobmon: could not close a logging session: %s", exc)


def open_jobmon(block: str | None = None) -> Jobmon:
    """A new :class:`~jobmon_core.Jobmon` on the destination of ``block``, for a task that
    must fail when jobmon cannot be reached (a check) and for your own tasks; the caller
    closes it (``with open_jobmon() as jobmon:``). A block that cannot be loaded is an
    :class:`~jobmon_core.InvalidArgumentError`."""
    return _new_jobmon(_key(block))


def _new_jobmon(key: tuple[str, ...]) -> Jobmon:
    if key[0] == "block":
        try:
            block = load_block(key[1])
        except Exception as exc:  # Prefect's errors: no such document, no API, a bad type
            raise InvalidArgumentError(
                f"the jobmon block {key[1]!r} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        return block.jobmon()
    return Jobmon(
        with_network_timeouts(key[1] or None),
        schema=key[2],
        application_name=APPLICATION_NAME,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
    )
