"""The page in a real headless browser (Debian's chromium), served by a real ``jobmon web``
process with a token: the health view shows CRITICAL after a failed configured run, and
the run view shows the failing step. One server for the module (a second costs ~2 s)."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devtools.screenshots import dump_dom, jobmon_web
from jobmon_core import Jobmon

from .conftest import drop_roles, failed_configured_run

TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def site(dsn: str) -> Iterator[tuple[str, int]]:
    """``jobmon web`` over a schema of the module's own holding a failed configured run;
    yields the server's URL and the failed run's job_id."""
    schema, role = f"jm_web_browser_{os.getpid()}", f"jm_web_browser_monitor_{os.getpid()}"
    jm = Jobmon(dsn, schema=schema)
    try:
        jm.install()
        jm.create_roles(writer=None, monitor=role, admin=None)
        failed = failed_configured_run(jm)
        with jobmon_web(dsn, schema, role, {"JOBMON_WEB_TOKEN": TOKEN}) as url:
            yield url, failed
    finally:
        jm.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            drop_roles(conn, role)


def test_without_the_token_the_server_answers_401(site):
    url, _ = site
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "/metrics", timeout=10)
    assert refused.value.code == 401
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert (
            b'jobmon_check_alert_code{alert_status="FAILED_RUN",job_name="NIGHTLY LOAD"} 3.0'
            in (answer.read())
        )


def test_the_health_view_shows_critical_after_a_failed_configured_run(site):
    url, _ = site
    dom = dump_dom(f"{url}/?token={TOKEN}")  # the token becomes a cookie, then the page
    assert re.search(r'<section class="level level-critical" id="level" data-code="3">', dom)
    assert re.search(r'<div class="word">CRITICAL</div>', dom)
    assert "NIGHTLY LOAD" in dom
    assert "1 CRITICAL run(s)" in dom


def test_the_run_view_shows_the_failing_step(site):
    url, failed = site
    dom = dump_dom(f"{url}/runs/{failed}?token={TOKEN}")
    step = re.search(
        r'<tr class="row-critical failed[^"]*" id="step-\d+">\s*<td>([^<]+)</td>(.*?)</tr>',
        dom,
        re.S,
    )
    assert step, dom[-3000:]
    assert step.group(1) == "analyze facts"
    assert "ValueError: boom" in step.group(2)
    assert 'class="bar critical"' in step.group(2)
