"""One background thread per process that writes the hooks' rows, in the order the hooks
ran, so that a task does not wait for the database.

A hook only snapshots what it was handed and queues the write (microseconds); the thread
writes it (a commit each: a few milliseconds). A flow run's end waits for everything queued
before it, at most :data:`DRAIN_TIMEOUT` seconds, so the job closes after its steps and the
log is complete when the flow returns; process exit waits the same way. Nothing here can
block a flow: a full queue (the database far slower than the flow) drops the write with one
warning per process. After one wait ran out (an outage, a write stuck on a dead network),
the next waits are :data:`SHORT_DRAIN` seconds for :data:`SLOW_PERIOD` seconds, without a
new warning: an outage costs the first flow end the full wait, not every flow end.

The price: a process killed outright (SIGKILL) loses the writes still queued, at most the
last moments; the runner's crash hook still closes the job, and its open steps, by key.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from jobmon_core.forking import forget_in_child

log = logging.getLogger("jobmon_prefect")

DRAIN_TIMEOUT = 15.0
"""Seconds a flow run's end (and process exit) waits for the writes queued before it: the
connect timeout (5 s) plus the lock and statement timeouts of a write, with room."""
SHORT_DRAIN = 1.0
"""Seconds a flow run's end waits for its writes while an earlier wait ran out."""
SLOW_PERIOD = 60.0
"""Seconds after a wait ran out during which waits are :data:`SHORT_DRAIN` (the back-off of
:class:`~jobmon_core.runs.RunGuard`)."""
MAX_QUEUED = 10_000


class BackgroundWriter:
    """A FIFO of writes and the daemon thread that runs them; restarted after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._warned_full = False
        self._slow_until = 0.0
        forget_in_child(self)

    def after_fork_in_child(self) -> None:
        """A forked child gets a fresh lock, queue and thread (the parent's thread is not
        in the child, and a lock it held would stay held)."""
        self._lock = threading.Lock()
        self._queue = queue.Queue(MAX_QUEUED)
        self._thread = None
        self._pid = -1
        self._slow_until = 0.0

    def submit(self, work: Callable[[], None]) -> bool:
        """Queue ``work``; False if the queue is full (one warning per process: a queue
        hovering at full would otherwise warn on every other write)."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(work)
        except queue.Full:
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "pg-jobmon: %d writes are waiting for the jobmon database; dropping new "
                    "ones until it catches up",
                    MAX_QUEUED,
                )
            return False
        return True

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Wait until everything queued so far is written; False after ``timeout`` (after
        :data:`SHORT_DRAIN` while an earlier wait ran out less than :data:`SLOW_PERIOD`
        seconds ago: one warning, not one per flow run)."""
        if self._thread is None or self._pid != os.getpid():
            return True
        slow = time.monotonic() < self._slow_until
        done = threading.Event()
        if not self.submit(done.set):
            return False
        if done.wait(min(timeout, SHORT_DRAIN) if slow else timeout):
            return True
        self._slow_until = time.monotonic() + SLOW_PERIOD
        if not slow:
            log.warning(
                "pg-jobmon: the jobmon writes of this flow run did not finish within %.0f s; "
                "going on without them (later flow runs wait at most %.0f s for theirs, "
                "for %.0f s)",
                timeout,
                SHORT_DRAIN,
                SLOW_PERIOD,
            )
        return False

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid() and self._thread is not None:
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            self._pid = os.getpid()  # a forked child starts afresh: the parent's thread is gone
            self._queue = queue.Queue(MAX_QUEUED)
            self._thread = threading.Thread(
                target=self._run, name="pg-jobmon-prefect-writer", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                work()
            except Exception as exc:  # the writes guard themselves; this is a last resort
                log.warning("pg-jobmon: a jobmon write failed: %s: %s", type(exc).__name__, exc)


writer = BackgroundWriter()
"""The process's writer (:func:`jobmon_prefect.destination.close_all`, run at exit, drains
it before it closes the sessions)."""
