"""Zero-code mode: log every flow run and task try of a Prefect server, with no change to
any flow, by following the server's event stream.

    JOBMON_DSN=postgresql://jobmon@db/warehouse PREFECT_API_URL=http://prefect:4200/api \\
        python -m jobmon_prefect.follower              # or --block prod

One follower per Prefect server, next to it (a systemd unit, a container): it subscribes to
``prefect.flow-run.*`` and ``prefect.task-run.*`` events and writes the run model of
:mod:`jobmon_prefect.runlog` with the same keys as the hooks, so a flow that also has the
hooks is logged once (each try's end is written by whichever observer comes first; the
other finds it finished and leaves it). ``--tag`` limits it to runs carrying a tag (a
deployment's tags are its runs' tags): the opt-in per deployment.

Why the event stream, not an OpenTelemetry span processor loaded through Prefect's plugin
entry point: it costs the flows nothing (the hooks cost each task a few milliseconds, and a
span processor runs inline in the same engine thread), it needs no experimental plugin API
and no ``opentelemetry-sdk``, and it sees what the runner and the server decide after a
flow's process is gone (a run set Crashed or Cancelled through the API). What it cannot
see: a task that never ran (skipped because its upstream failed: it never reaches Running),
and a flow run killed with no runner or server to notice (a plain script killed with
SIGKILL stays Running on the server, so its job stays open). Nor can it follow an ephemeral server
(it dies with its process; run ``prefect server start``), and Prefect hands events no
exception of a retried try. Task events are batched by the client and may arrive after
their flow run's end: a flow run's end is therefore applied :data:`FLOW_END_GRACE` seconds
late, after the task events it is waiting for. On subscribing (and after a lost connection)
Prefect replays about the last minute of events: a follower restarted within a minute misses
nothing, and the replayed events find their rows by key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict, deque
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from .runlog import RunLogger, state_type

log = logging.getLogger("jobmon_prefect")

FLOW_END_GRACE = 3.0
"""Seconds a flow run's end waits for the task events the client may still be sending."""
RECONNECT_DELAY = 5.0
TICK = 0.2
"""Seconds between checks for flow run ends whose grace is over (and for a stop)."""
EVENT_PREFIXES = ["prefect.flow-run.", "prefect.task-run."]
_SEEN = 10_000  # event ids remembered, for the replays the subscriber sends on reconnect


class Follower:
    """Turns events into :class:`RunLogger` calls. ``handle`` is synchronous and never
    raises; the flow run ends it was handed are applied by :meth:`due` after the grace."""

    def __init__(
        self, block: str | None = None, *, tag: str | None = None, grace: float = FLOW_END_GRACE
    ) -> None:
        self.run_log = RunLogger(block, exclusive=False, background=False, tasks_create_job=True)
        self.tag = tag
        self.grace = grace
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self._running: OrderedDict[str, int] = OrderedDict()  # flow run id -> Running events
        self.pending_ends: list[tuple[float, Any, Any, Any]] = []
        self.lags: deque[float] = deque(maxlen=1000)
        """Seconds from each recent event's state change to its arrival here (events that
        happened before the follower started, replayed on subscribing, left out)."""
        self.started = datetime.now(UTC)

    def handle(self, event: Any, now: float) -> None:
        try:
            self._handle(event, now)
        except Exception as exc:  # a malformed event must not stop the follower
            log.warning("pg-jobmon: could not follow event %s: %s", event.event, exc)

    def _handle(self, event: Any, now: float) -> None:
        if event.id in self._seen:
            return
        if event.occurred >= self.started:
            self.lags.append((datetime.now(UTC) - event.occurred).total_seconds())
        self._seen[event.id] = None
        while len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        if self.tag is not None and not any(
            r.role == "tag" and r.id == f"prefect.tag.{self.tag}" for r in event.related
        ):
            return
        state = _state(event.payload.get("validated_state") or {})
        kind = state_type(state)
        run_id = event.resource.id.rsplit(".", 1)[-1]
        flow = SimpleNamespace(name=_related_name(event, "flow"))
        if event.event.startswith("prefect.flow-run."):
            if kind == "RUNNING":
                count = self._running.get(run_id, 0)
                self._running[run_id] = count + 1
                if len(self._running) > _SEEN:  # runs that never ended (killed, no runner)
                    self._running.popitem(last=False)
                flow_run = SimpleNamespace(id=run_id, name=_name(event), run_count=count)
                self.run_log.flow_state(flow, flow_run, state)
            elif state.is_final_end:
                self._running.pop(run_id, None)
                flow_run = SimpleNamespace(id=run_id, name=_name(event), run_count=0)
                self.pending_ends.append((now + self.grace, flow, flow_run, state))
            return
        flow_run_id = _related_id(event, "flow-run")
        if flow_run_id is None:
            return
        task_run = event.payload.get("task_run") or {}
        run = SimpleNamespace(
            id=run_id,
            name=_name(event),
            flow_run_id=flow_run_id,
            run_count=task_run.get("run_count", 1),
            dynamic_key=task_run.get("dynamic_key"),
        )
        if kind in ("RUNNING", "COMPLETED", "FAILED", "CRASHED"):
            self.run_log.task_state(None, run, state, flow_name=flow.name)

    def due(self, now: float) -> None:
        """Apply the flow run ends whose grace is over."""
        ready = [end for end in self.pending_ends if end[0] <= now]
        self.pending_ends = [end for end in self.pending_ends if end[0] > now]
        for _, flow, flow_run, state in ready:
            self.run_log.flow_state(flow, flow_run, state)


def _state(data: dict[str, Any]) -> Any:
    kind = str(data.get("type") or "")
    return SimpleNamespace(
        type=kind,
        name=data.get("name") or kind.title(),
        message=data.get("message"),
        data=None,
        is_final_end=kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"),
    )


def _name(event: Any) -> str | None:
    name = event.resource.get("prefect.resource.name")
    return None if name is None else str(name)


def _related_name(event: Any, role: str) -> str | None:
    for related in event.related:
        if related.role == role:
            name = related.get("prefect.resource.name")
            return None if name is None else str(name)
    return None


def _related_id(event: Any, role: str) -> str | None:
    for related in event.related:
        if related.role == role:
            return str(related.id).rsplit(".", 1)[-1]
    return None


async def follow(
    block: str | None = None,
    *,
    tag: str | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    grace: float = FLOW_END_GRACE,
    follower: Follower | None = None,
) -> None:
    """Follow the server of ``PREFECT_API_URL`` until ``stop`` is set (forever if None),
    reconnecting after a lost connection. ``ready`` is set once subscribed; ``grace`` is
    how long a flow run's end waits for its task events (:data:`FLOW_END_GRACE`);
    ``follower`` is one of the caller's (its ``lags`` say how late events came)."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    if follower is None:
        follower = Follower(block, tag=tag, grace=grace)
    loop = asyncio.get_running_loop()
    event_filter = EventFilter(event=EventNameFilter(prefix=EVENT_PREFIXES))

    async def consume(subscriber: Any) -> None:
        async for event in subscriber:
            follower.handle(event, loop.time())

    while stop is None or not stop.is_set():
        try:
            async with get_events_subscriber(filter=event_filter) as subscriber:
                log.info("pg-jobmon: following the Prefect events of %s", _api_url())
                if ready is not None:
                    ready.set()
                consuming = asyncio.ensure_future(consume(subscriber))
                try:
                    while not consuming.done() and (stop is None or not stop.is_set()):
                        follower.due(loop.time())
                        await asyncio.wait({consuming}, timeout=TICK)
                finally:
                    consuming.cancel()
                if consuming.done() and not consuming.cancelled():
                    consuming.result()  # the stream ended or failed: reconnect
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "pg-jobmon: lost the Prefect event stream (%s: %s); reconnecting in %.0f s",
                type(exc).__name__,
                exc,
                RECONNECT_DELAY,
            )
            await asyncio.sleep(RECONNECT_DELAY)
    follower.due(float("inf"))  # a stop applies the ends still waiting


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jobmon_prefect.follower",
        description="Log every Prefect flow run and task try of PREFECT_API_URL into jobmon.",
    )
    parser.add_argument("--block", help="a saved JobmonPostgres block (default: JOBMON_DSN)")
    parser.add_argument("--tag", help="only runs with this tag (a deployment's tags)")
    args = parser.parse_args(argv)
    if not _api_url():
        parser.error(
            "PREFECT_API_URL is not set: the follower would start a temporary Prefect server "
            "of its own that no flow uses. Set it to your server's API "
            "(e.g. PREFECT_API_URL=http://prefect:4200/api)"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)  # a service: say what it follows (Prefect's config has set up
    # the handlers already, which makes basicConfig a no-op, and leaves the level at WARNING)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly
        asyncio.run(follow(args.block, tag=args.tag))


def _api_url() -> str | None:
    """The Prefect API this process reaches (environment, profile or .env), if any."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


if __name__ == "__main__":
    main()
