"""The FastAPI app: three server-rendered views and ``/metrics``, all read-only.

- ``/``: health, the worst alert code as a big OK / WARNING / CRITICAL and the
  ``check_job_status`` rows (whatever rules produce them);
- ``/jobs``: the latest runs, filtered by name, status and start time, a page at a time,
  each job name with a small chart of its recent durations and outcomes;
- ``/runs/{job_id}``: one run's steps as a timeline;
- ``/airflow/{dag_id}/{run_id}``: the job of a DAG run (the Airflow plugin links to it);
- ``/metrics``: Prometheus exposition text (:mod:`jobmon_web.metrics`).

Links are relative to where the app is mounted (``root_path``), so the same app works at
``/`` standalone and at ``/jobmon`` inside Airflow. HTML, CSS and the charts are rendered
here (Jinja2 templates and inline SVG shipped in the package): no CDN, no script, nothing
fetched from elsewhere. Access control is the caller's: ``jobmon web`` passes a token,
the Airflow plugin a dependency on Airflow's auth manager.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.params import Depends
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from jobmon_core import __version__
from jobmon_core.checker import fetch_alerts
from jobmon_core.errors import InvalidArgumentError, JobmonError, NotFoundError

from . import present, queries
from .database import ReadOnlyDatabase
from .metrics import exposition

TOKEN_COOKIE = "jobmon_token"
HEALTH_PAGE = 100
"""The health view shows this many check_job_status rows at a time (the big word and the
count of problems are still those of every row)."""
STATUS_CHOICES = ("OK", "WARNING", "CRITICAL", queries.RUNNING)

_templates = Environment(
    loader=PackageLoader("jobmon_web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(
    when=present.when,
    status_class=present.status_class,
    seconds=present.seconds,
    level_name=present.level_name,
    version=__version__,
)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(root=_root(request), **context)
    return HTMLResponse(html, status_code=status_code)


def _error(request: Request, exc: JobmonError) -> HTMLResponse:
    """A page saying what went wrong: bad input 400, nothing there 404, else 503 (the
    database cannot be read now); messages are pg-jobmon's own, password-free."""
    code = 400 if isinstance(exc, InvalidArgumentError) else 503
    if isinstance(exc, NotFoundError):
        code = 404
    return _page(request, "error.html", status_code=code, message=str(exc), code=code)


def _moment(text: str | None, what: str) -> datetime | None:
    """A filter time: ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM[:SS]``, UTC unless it says."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"{what} must be a date or time like 2026-11-28 or 2026-11-28T06:30, not {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _count(text: str | None, what: str, default: int | None, high: int) -> int | None:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= high:
        raise InvalidArgumentError(f"{what} must be a whole number from 1 to {high}, not {text!r}")
    return int(text)


def _offset(text: str | None) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise InvalidArgumentError(f"offset must be a whole number from 0, not {text!r}")
    return int(text)


def _query(items: list[tuple[str, str]]) -> str:
    return "?" + urlencode(items) if items else ""


def _run_filter(request: Request) -> queries.RunFilter:
    q = request.query_params
    status = (q.get("status") or "").strip().upper() or None
    name = (q.get("name") or "").strip() or None
    if name is not None and ("\x00" in name or len(name.encode()) > 800):
        raise InvalidArgumentError("name must be a job name (no NUL, at most 800 bytes)")
    if status is not None and status not in STATUS_CHOICES:
        raise InvalidArgumentError(f"status must be one of {', '.join(STATUS_CHOICES)}")
    return queries.RunFilter(
        name=name,
        status=status,
        since=_moment(q.get("since"), "since"),
        until=_moment(q.get("until"), "until"),
        before=_count(q.get("before"), "before", None, 2**63 - 1),
        limit=_count(q.get("limit"), "limit", 50, queries.MAX_PAGE) or 50,
    )


def create_app(
    database: ReadOnlyDatabase,
    *,
    token: str | None = None,
    dependencies: Sequence[Depends] = (),
    title: str = "pg-jobmon",
    step_metrics: bool = False,
    health_page: int = HEALTH_PAGE,
) -> FastAPI:
    """The app over ``database``. ``token``: every request must carry it (``Authorization:
    Bearer``, or once as ``?token=``, which sets a cookie). ``dependencies``: FastAPI
    dependencies run before every view (the Airflow plugin's access check).
    ``step_metrics``: /metrics adds the per-step durations (labels from step actions, so
    opt-in). ``health_page``: check_job_status rows per page of ``/``. The app owns
    nothing but the views: ``database`` is closed when the app shuts down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(database.close)

    app = FastAPI(
        title=title,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=list(dependencies),
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def timing_and_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        if token is not None:
            refused = _token_refusal(request, token)
            if refused is not None:
                return refused
        response = await call_next(request)
        took = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={took:.1f}"
        return response

    @app.get("/", response_class=HTMLResponse)
    def health(request: Request) -> Response:
        try:
            offset = _offset(request.query_params.get("offset"))
            alerts = database.read(lambda conn: fetch_alerts(conn, database.schema))
        except JobmonError as exc:
            return _error(request, exc)
        code, level = present.health_level(alerts)  # of every row, not just the page's
        shown = alerts[offset : offset + health_page]
        return _page(
            request,
            "health.html",
            alerts=alerts,
            shown=shown,
            first=offset + 1,
            newer=_query([("offset", str(max(offset - health_page, 0)))]) if offset else None,
            older=_query([("offset", str(offset + health_page))])
            if offset + health_page < len(alerts)
            else None,
            code=code,
            level=level,
            view="health",
        )

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request) -> Response:
        try:
            wanted = _run_filter(request)

            def read(conn: Any) -> tuple[Any, Any, Any]:
                found = queries.runs(conn, database.schema, wanted)
                names = list(dict.fromkeys(r.job_name for r in found))
                sparks = queries.spark_runs(conn, database.schema, names)
                return found, sparks, queries.job_names(conn, database.schema)

            found, sparks, names = database.read(read)
        except JobmonError as exc:
            return _error(request, exc)
        now = datetime.now(UTC)
        root = _root(request)
        charts = {name: present.spark_svg(runs, now, root) for name, runs in sparks.items()}
        more = found[-1].job_id if len(found) == wanted.limit else None
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "before"]
        return _page(
            request,
            "jobs.html",
            view="jobs",
            runs=found,
            charts=charts,
            # each job's chart once, on its newest row of the page
            charted={r.job_name: r.job_id for r in reversed(found)},
            names=names,
            wanted=wanted,
            query=dict(request.query_params),
            newest=_query(kept) if wanted.before else None,
            older=_query([*kept, ("before", str(more))]) if more else None,
            now=now,
            duration=present.duration,
            statuses=STATUS_CHOICES,
        )

    @app.get("/runs/{job_id}", response_class=HTMLResponse)
    def run(request: Request, job_id: int, after: int | None = None) -> Response:
        def read(conn: Any) -> tuple[Any, Any]:
            schema = database.schema
            return queries.run(conn, schema, job_id), queries.steps(conn, schema, job_id, after)

        try:
            job, steps = database.read(read)
            if job is None:
                raise NotFoundError(f"no run with job_id {job_id} in the log")
        except JobmonError as exc:
            return _error(request, exc)
        now = datetime.now(UTC)
        return _page(
            request,
            "run.html",
            view="run",
            job=job,
            segments=present.timeline(job, steps, now),
            more=steps[-1].step_id if len(steps) == queries.STEPS_PAGE else None,
            after=after,
            duration=present.duration(job.start_time, job.end_time, now),
        )

    @app.get("/airflow/{dag_id}/{run_id:path}", response_class=HTMLResponse)
    def airflow_run(request: Request, dag_id: str, run_id: str) -> Response:
        """The job of a DAG run: its newest attempt (a cleared run is a new job)."""
        try:
            found = database.read(
                lambda conn: queries.airflow_runs(conn, database.schema, dag_id, run_id)
            )
            if not found:
                raise NotFoundError(
                    f"no jobmon job for DAG run {run_id!r} of {dag_id!r}: the DAG is not "
                    "logged (callbacks or [jobmon] enable_listener), or the run was purged"
                )
        except JobmonError as exc:
            return _error(request, exc)
        return RedirectResponse(f"{_root(request)}/runs/{found[0].job_id}", status_code=307)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(exposition(database, step_metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def _token_refusal(request: Request, token: str) -> Response | None:
    """None when the request carries the token; else the redirect that stores a token
    given in the URL in a cookie, or a 401 saying how to pass it."""
    header = request.headers.get("authorization", "")
    offered = [request.cookies.get(TOKEN_COOKIE, "")]
    if header[:7].lower() == "bearer ":
        offered.append(header[7:].strip())
    if any(hmac.compare_digest(given.encode(), token.encode()) for given in offered if given):
        return None
    given = request.query_params.get("token", "")
    if given and hmac.compare_digest(given.encode(), token.encode()):
        rest = request.url.remove_query_params("token")
        # one leading slash: "//host/..." would send the browser to another site
        target = "/" + rest.path.lstrip("/") + (f"?{rest.query}" if rest.query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            TOKEN_COOKIE, token, httponly=True, samesite="strict", path=_root(request) or "/"
        )
        return response
    return HTMLResponse(
        "<!doctype html><title>pg-jobmon: token needed</title><p>This pg-jobmon page needs "
        "its token: open it once as <code>?token=...</code> (a cookie keeps it), or send "
        "<code>Authorization: Bearer ...</code> (Prometheus: <code>authorization: "
        "credentials</code>).</p>",
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )
