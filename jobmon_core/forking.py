"""Forget a parent's per-process state in a child of ``fork()``.

A child of ``fork()`` starts with a copy of everything its parent held: reserved ids,
queued steps, a timer whose thread does not exist in the child, and locks that a thread of
the parent may have held at that moment (held for ever in the child). Used as they are,
parent and child give out the same ids and write each other's steps. Objects that hold such
state register here, and :func:`os.register_at_fork` makes every registered object drop it
in the child, before any code of the child runs and while the child has a single thread.

Why a hook rather than a pid check on each call: the hook costs nothing on the hot path,
and it runs before a lock copied in a held state can be waited for, which a check made
inside a call cannot promise. Objects are held weakly, so registering keeps nothing alive
(``os.register_at_fork`` itself keeps its callable for ever: it is this module's function,
never an object's method). A fork that bypasses Python's ``os.fork()`` (a C extension
calling ``fork()`` without ``exec``) runs no hook; the logging connection, whose shared
socket is the one thing that must never be used by two processes, checks its pid too.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Protocol

logger = logging.getLogger("jobmon_core")


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None:
        """Drop what belongs to the parent; called in the child, single-threaded."""


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def forget_in_child(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every child forked while ``obj`` is alive."""
    _registered.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_registered):
        try:
            obj.after_fork_in_child()
        except Exception:  # never break the child: the caller's code runs next
            logger.warning("pg-jobmon: could not reset %r after fork()", obj, exc_info=True)


os.register_at_fork(after_in_child=_after_fork_in_child)
