"""JobmonCheckTrigger: the waiting of JobmonCheckSensor, done in the triggerer.

It polls with async psycopg (through :mod:`jobmon_core.aio`, the same statements as the sync
check), so no worker slot is held while it waits. Its serialized form holds the connection
id, never the connection string or a password.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from jobmon_core import aio
from jobmon_core.check_tasks import as_datetime, as_history, failing
from jobmon_core.connection import resolve_target


class JobmonCheckTrigger(BaseTrigger):
    """Fire ``{"status": "success" | "failed", ...}`` once the awaited outcome is known.

    It serves both sensors: without ``job_name`` it waits as :class:`JobmonCheckSensor`
    (the event carries ``alerts``), with it as :class:`JobmonJobRunSensor` (the event carries
    ``job_name``, ``job_id`` and ``run_status``). Triggers serialized by older versions of
    the provider keep these arguments, so they resume after an upgrade.

    :param jobmon_conn_id: the Airflow connection of the jobmon database (an id: the
        serialized trigger never holds a connection string or a password).
    :param poke_interval: seconds between two polls.
    :param fail_level: check mode: the lowest alert code that fails at once.
    :param history: check mode: the window to look back, as a duration string.
    :param job_name: job-run mode: the job whose run is awaited.
    :param since: job-run mode: the earliest start of a run that counts (ISO 8601).
    """

    def __init__(
        self,
        *,
        jobmon_conn_id: str,
        poke_interval: float,
        fail_level: int = 3,
        history: str | None = None,
        job_name: str | None = None,
        since: str | None = None,
    ) -> None:
        super().__init__()
        self.jobmon_conn_id = jobmon_conn_id
        self.poke_interval = poke_interval
        self.fail_level = fail_level
        self.history = history
        self.job_name = job_name
        self.since = since

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "jobmon_conn_id": self.jobmon_conn_id,
                "poke_interval": self.poke_interval,
                "fail_level": self.fail_level,
                "history": self.history,
                "job_name": self.job_name,
                "since": self.since,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from jobmon_airflow.hooks.jobmon import JobmonHook

        conninfo, schema = await JobmonHook(self.jobmon_conn_id).aget_conninfo()
        target = resolve_target(conninfo)
        while True:
            event = await self._poll(target, schema)
            if event is not None:
                yield TriggerEvent(event)
                return
            await asyncio.sleep(self.poke_interval)

    async def _poll(self, target: Any, schema: str) -> dict[str, Any] | None:
        if self.job_name is not None:
            since: datetime = as_datetime(self.since)
            state = await aio.run_state(target, schema, self.job_name, since)
            if state.state in ("waiting", "running"):
                return None
            return {"status": "success" if state.state == "succeeded" else "failed",
                    "job_name": self.job_name, "job_id": state.job_id,
                    "run_status": state.status}  # fmt: skip
        alerts = await aio.check_job_status(target, schema, as_history(self.history))
        if failing(alerts, self.fail_level):
            return {"status": "failed", "alerts": [a.to_dict() for a in alerts]}
        if all(a.is_ok for a in alerts):
            return {"status": "success", "alerts": [a.to_dict() for a in alerts]}
        return None
