"""The Airflow plugin (entry point ``airflow.plugins``) that puts the jobmon page in Airflow.

- ``fastapi_apps`` mounts :mod:`jobmon_web`'s app at ``/jobmon`` in the API server;
- ``external_views`` adds "Jobmon" to the UI's navigation (Browse), embedding the page, and
  a "Jobmon" tab on every DAG run, which opens the run's jobmon job;
- only users Airflow's auth manager lets read every DAG's runs may open it (the page shows
  all of them, and jobs logged outside Airflow too): the same JWT (the UI's ``_token``
  cookie, or ``Authorization: Bearer``) and the same ``is_authorized_dag`` check as
  Airflow's own DAG-run views.

The page reads the jobmon schema through the jobmon connection (``[jobmon] web_conn_id``,
else ``[jobmon] conn_id``, else ``jobmon_default``; the same connection types and extras as
:class:`~jobmon_airflow.hooks.jobmon.JobmonHook`), read-only as the monitor role
(``[jobmon] web_role``, default ``jobmon_monitor``): the connection's login must be a member
of it. Nothing is imported or looked up until the first request reaches the API server, so
the other Airflow processes that load plugins (scheduler, workers, tasks) pay nothing.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from .listeners import _setting

URL_PREFIX = "/jobmon"


def _connection() -> tuple[str, str]:
    """The jobmon connection's libpq string and schema, looked up at the first request (in
    a thread of its own: Airflow's lookup must not touch the API server's session)."""
    from .hooks.jobmon import JobmonHook
    from .runlog import lookup_connection

    conn_id = _setting("web_conn_id", "") or _setting("conn_id", "jobmon_default")
    return JobmonHook.conninfo_from(lookup_connection(conn_id))


def _build() -> Any:
    """The FastAPI app of :mod:`jobmon_web`, behind Airflow's authentication."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, HTTPException

    from jobmon_web.app import create_app
    from jobmon_web.database import ReadOnlyDatabase

    # a default, not Annotated: the annotations are strings (__future__), and FastAPI could
    # not resolve this function's local imports in them
    async def airflow_access(user: Any = Depends(get_user)) -> None:  # noqa: B008
        """Airflow's own check for its DAG-run views (no DAG named: all of them); no
        valid JWT is a 401 from ``get_user``."""
        allowed = get_auth_manager().is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.RUN, user=user
        )
        if not allowed:
            raise HTTPException(status_code=403, detail="not allowed to read every DAG's runs")

    database = ReadOnlyDatabase(_connection, role=_setting("web_role", "jobmon_monitor"))
    atexit.register(database.close)  # Airflow runs no lifespan for a plain ASGI mount
    return create_app(
        database, dependencies=[Depends(airflow_access)], title="pg-jobmon in Airflow"
    )


class JobmonWebApp:
    """The ASGI app mounted in the API server: it builds the real one on the first request,
    so the web extra is imported only by the API server, and only when the page is used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: Any = None

    def _get(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = _build()
            return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self._app
        if app is None:
            from starlette.concurrency import run_in_threadpool

            app = await run_in_threadpool(self._get)
        await app(scope, receive, send)


class JobmonWebPlugin(AirflowPlugin):
    name = "pg_jobmon_web"
    # Airflow reads (and may prune) these lists on the class: AirflowPlugin's own shape
    fastapi_apps = [  # noqa: RUF012
        {"app": JobmonWebApp(), "url_prefix": URL_PREFIX, "name": "pg-jobmon"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Jobmon",
            "href": f"{URL_PREFIX}/",
            "url_route": "jobmon",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Jobmon",
            "href": f"{URL_PREFIX}/airflow/{{DAG_ID}}/{{RUN_ID}}",
            "url_route": "jobmon_run",
            "destination": "dag_run",
        },
    ]
