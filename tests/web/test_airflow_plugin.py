"""The page inside a real ``airflow api-server``: the provider's ``pg_jobmon_web`` plugin
mounts it at /jobmon, lists its "Jobmon" views, lets in only users Airflow's auth manager
authenticates and allows, and a real browser logged in to Airflow sees the health view.
One Airflow for the module (~20 s to start)."""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from psycopg import sql

from devtools.airflow_env import jobmon_connection
from devtools.screenshots import dump_dom
from jobmon_core import Jobmon
from tests.airflow.real_airflow import RealAirflow, real_airflow

from .conftest import drop_roles, failed_configured_run

RUN_KEY = "airflow:etl_orders/manual__2026-11-28T05:00:00+00:00@2026-11-28T05:00:01.000000+00:00/x"
JWT_SECRET = "pg-jobmon-web-test-secret-" + "0" * 40
pytestmark = pytest.mark.e2e  # a real Airflow: CI runs it once (on the embedded server)


def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """(status, body, final URL) of a GET, following redirects."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, r.read().decode(), r.geturl()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), url
    except OSError as exc:  # not listening yet
        return 0, str(exc), url


@pytest.fixture(scope="module")
def airflow(dsn: str) -> Iterator[tuple[RealAirflow, str, dict[str, Any]]]:
    """A real Airflow (all-admins simple auth manager) whose jobmon connection points at a
    schema of the module's own, with a failed configured run and a DAG run's job."""
    schema, role = f"jm_web_airflow_{os.getpid()}", f"jm_web_airflow_monitor_{os.getpid()}"
    jm = Jobmon(dsn, schema=schema)
    dags = Path(tempfile.mkdtemp(prefix="pg-jobmon-web-dags-"))
    try:
        jm.install()
        jm.create_roles(writer=None, monitor=role, admin=None)
        ids = {
            "failed": failed_configured_run(jm),
            "dag_run": jm.add_job("etl_orders", run_key=RUN_KEY),
        }
        env = {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW_CONN_JOBMON_DEFAULT": jobmon_connection(dsn, schema),
            "AIRFLOW__JOBMON__WEB_ROLE": role,
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,  # to sign a user without a role
        }
        with real_airflow(dags, env) as af:
            base = f"http://127.0.0.1:{af.env['AIRFLOW__API__PORT']}"
            af.wait("the api-server", lambda: get(f"{base}/api/v2/monitor/health")[0] == 200)
            yield af, base, ids
    finally:
        jm.close()
        dags.rmdir()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            drop_roles(conn, role)


@pytest.fixture(scope="module")
def token(airflow) -> str:
    """A JWT from Airflow's auth manager (all-admins mode: no credentials needed)."""
    _, base, _ = airflow
    status, body, _ = get(f"{base}/auth/token")
    assert status == 201, body
    return str(json.loads(body)["access_token"])


def test_only_users_the_auth_manager_lets_read_dag_runs_open_the_page(airflow, token):
    """All-admins mode authenticates every request (it adds an admin token to those that
    carry none), so what the page refuses are a token Airflow does not accept and a user
    the auth manager does not let read DAG runs: a valid JWT whose user has no role."""
    _, base, _ = airflow
    no_role = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "role": None},
        JWT_SECRET,
        algorithm=jwt.get_unverified_header(token)["alg"],
    )
    for path in ("/jobmon/", "/jobmon/jobs", "/jobmon/metrics"):
        status, body, _ = get(base + path, "not-a-jwt")
        assert status == 403, (path, body)
        assert "Invalid JWT token" in body
        status, body, _ = get(base + path, no_role)
        assert status == 403, (path, body)
        assert "not allowed to read every DAG's runs" in body
        assert get(base + path, token)[0] == 200


def test_an_airflow_user_sees_the_views_mounted_at_jobmon(airflow, token):
    _, base, ids = airflow
    status, body, _ = get(f"{base}/jobmon/", token)
    assert status == 200, body
    assert '<div class="word">CRITICAL</div>' in body
    assert 'href="/jobmon/jobs"' in body  # links follow the mount point
    status, body, _ = get(f"{base}/jobmon/runs/{ids['failed']}", token)
    assert "ValueError: boom" in body
    status, body, _ = get(f"{base}/jobmon/metrics", token)
    assert 'jobmon_check_alert_code{alert_status="FAILED_RUN",job_name="NIGHTLY LOAD"} 3.0' in body


def test_a_dag_run_opens_its_jobmon_job(airflow, token):
    _, base, ids = airflow
    run_id = "manual__2026-11-28T05:00:00+00:00"
    status, body, final = get(f"{base}/jobmon/airflow/etl_orders/{run_id}", token)
    assert status == 200, body
    assert final.endswith(f"/jobmon/runs/{ids['dag_run']}")
    assert "ETL_ORDERS" in body


def test_the_plugin_adds_jobmon_to_the_navigation_and_to_dag_runs(airflow, token):
    _, base, _ = airflow
    status, body, _ = get(f"{base}/api/v2/plugins", token)
    assert status == 200, body
    (plugin,) = [p for p in json.loads(body)["plugins"] if p["name"] == "pg_jobmon_web"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/jobmon"]
    views = {(v["name"], v["destination"], v["href"]) for v in plugin["external_views"]}
    assert views == {
        ("Jobmon", "nav", "/jobmon/"),
        ("Jobmon", "dag_run", "/jobmon/airflow/{DAG_ID}/{RUN_ID}"),
    }


def test_a_browser_logged_in_to_airflow_sees_the_health_view(airflow):
    _, base, _ = airflow
    dom = dump_dom(f"{base}/auth/token/login?next=/jobmon/")  # sets Airflow's JWT cookie
    assert '<div class="word">CRITICAL</div>' in dom, dom[:3000]
    assert "NIGHTLY LOAD" in dom


def test_airflow_ui_embeds_the_page_under_its_jobmon_menu_entry(airflow):
    """The UI's own route for the external view (/plugin/jobmon), rendered by Airflow's
    React app in the browser, frames the page."""
    _, base, _ = airflow
    dom = dump_dom(f"{base}/auth/token/login?next=/plugin/jobmon", wait_ms=20000)
    assert re.search(r'<iframe [^>]*src="/jobmon/" title="Jobmon"', dom), dom[-3000:]
