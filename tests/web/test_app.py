"""The page's views over a real PostgreSQL: health, jobs (filters, pages, charts), one run,
the Airflow run link, errors, the token, and HTML escaping of whatever the log holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from jobmon_web import queries
from jobmon_web.app import HEALTH_PAGE, TOKEN_COOKIE, create_app
from jobmon_web.database import ReadOnlyDatabase

from .conftest import failed_configured_run, table


def level(html: str) -> str:
    found = re.search(r'<div class="word">(\w+)</div>', html)
    assert found, html[:2000]
    return found.group(1)


def run_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<td><a href="/runs/(\d+)">#', html)]


# -- health ----------------------------------------------------------------------------------


def test_health_is_ok_on_a_healthy_log_and_critical_after_a_failed_configured_run(client, jm):
    page = client.get("/")
    assert page.status_code == 200
    assert level(page.text) == "OK"
    failed_configured_run(jm)
    page = client.get("/")
    assert level(page.text) == "CRITICAL"
    assert 'data-code="3"' in page.text
    assert "NIGHTLY LOAD" in page.text
    assert "1 CRITICAL run(s)" in page.text
    assert "FAILED_RUN" in page.text


def test_health_shows_a_warning_row_as_warning(client, jm):
    jm.configure_check("nightly load", warn=timedelta(hours=1), error=timedelta(hours=2))
    jm.fail_job(jm.add_job("nightly load"), 2)
    page = client.get("/")
    assert level(page.text) == "WARNING"


def alert_rows(html: str) -> list[str]:
    return re.findall(r'<a href="/jobs\?name=([^"]+)">', html.split("<h2>check_job_status")[1])


def test_health_shows_a_page_of_rows_and_the_word_and_count_of_all_of_them(database, jm):
    for i in range(5):
        name = f"job {i}"
        jm.configure_check(name, warn=timedelta(hours=25), error=timedelta(hours=49))
        jm.fail_job(jm.add_job(name), 3 if i == 4 else 2)  # the CRITICAL one sorts last
    assert HEALTH_PAGE == 100
    with TestClient(create_app(database, health_page=2)) as paged:
        seen, url = [], "/"
        while url:
            page = paged.get(url).text
            assert level(page) == "CRITICAL"  # the worst of every row, on every page
            assert "5 problems" in page
            assert len(alert_rows(page)) <= 2
            seen += alert_rows(page)
            found = re.search(r'<a rel="next" href="([^"]+)">more rows', page)
            url = found.group(1) if found else ""
        assert sorted(seen) == [f"JOB%20{i}" for i in range(5)]
        second = paged.get("/?offset=2").text
        assert "rows 3 to 4 of 5" in second
        assert '<a href="/?offset=0">« previous rows</a>' in second
        assert paged.get("/?offset=-1").status_code == 400


# -- jobs ------------------------------------------------------------------------------------


def test_jobs_lists_the_newest_runs_with_status_start_duration_owner_and_running_marked(client, jm):
    done = jm.add_job("copy")
    jm.close_job(done)
    failed = failed_configured_run(jm, "load")
    running = jm.add_job("export")
    page = client.get("/jobs").text
    assert run_ids(page) == [running, failed, done]
    assert re.search(r'<span class="badge running">RUNNING</span>', page)
    assert re.search(r'<span class="badge critical">CRITICAL</span>', page)
    assert " …</td>" in page  # the running run's duration so far
    owner = jm.show_job("copy")[0].owner
    assert f"<td>{owner}</td>" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=copy", ["copy2", "copy1"]),  # case-insensitive exact name, as show_job
        ("status=CRITICAL", ["load"]),
        ("status=running", ["export"]),
        ("name=COPY&status=OK", ["copy2", "copy1"]),
        ("name=nothing", []),
    ],
)
def test_jobs_filters_by_name_and_status_in_sql(client, jm, query, expected):
    ids = {"copy1": jm.add_job("copy")}
    jm.close_job(ids["copy1"])
    ids["load"] = failed_configured_run(jm, "load")
    ids["copy2"] = jm.add_job("copy")
    jm.close_job(ids["copy2"])
    ids["export"] = jm.add_job("export")
    page = client.get(f"/jobs?{query}").text
    assert run_ids(page) == [ids[k] for k in expected]
    if not expected:
        assert "No runs match these filters" in page


def test_jobs_filters_by_start_time(client, jm, admin):
    old, new = jm.add_job("old"), jm.add_job("new")
    admin.execute(
        sql.SQL("UPDATE {} SET start_time = '2020-01-02 03:00+00' WHERE job_id = %s").format(
            table(jm, "job_log")
        ),
        [old],
    )
    assert run_ids(client.get("/jobs?since=2021-01-01").text) == [new]
    assert run_ids(client.get("/jobs?until=2021-01-01T00:00").text) == [old]
    assert run_ids(client.get("/jobs?since=2020-01-02T02:00&until=2020-01-02T04:00").text) == [old]


def test_jobs_pages_cover_every_run_once_newest_first(client, jm):
    made = [jm.add_job(f"job {i % 3}") for i in range(7)]
    seen, url = [], "/jobs?limit=3"
    while url:
        page = client.get(url).text
        seen += run_ids(page)
        found = re.search(r'<a rel="next" href="([^"]+)">older', page)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == made[::-1]
    assert "« newest" in client.get(f"/jobs?limit=3&before={made[4]}").text


def test_an_older_page_whose_cursor_run_was_purged_continues_below_its_id(client, jm, admin):
    made = [jm.add_job("purged cursor") for _ in range(5)]
    admin.execute(
        sql.SQL("DELETE FROM {} WHERE job_id = %s").format(table(jm, "job_log")), [made[2]]
    )
    assert run_ids(client.get(f"/jobs?limit=3&before={made[2]}").text) == [made[1], made[0]]


def test_each_job_name_has_a_chart_of_its_recent_runs_oldest_first(client, jm):
    ids = []
    for i in range(queries.SPARK_RUNS + 3):
        ids.append(jm.add_job("chart"))
        (jm.close_job if i % 2 else jm.fail_job)(ids[-1])
    page = client.get("/jobs?name=chart&limit=1").text
    bars = re.findall(r'<a href="/runs/(\d+)"><rect class="(\w+)"', page)
    assert [int(i) for i, _ in bars] == ids[-queries.SPARK_RUNS :]
    assert {css for _, css in bars} == {"ok", "critical"}


def test_bad_filters_are_a_clear_400(client):
    for query, said in [
        ("since=yesterday", "since must be a date or time"),
        ("status=BROKEN", "status must be one of OK, WARNING, CRITICAL, RUNNING"),
        ("limit=100000", "limit must be a whole number from 1 to 200"),
        ("before=-1", "before must be a whole number"),
    ]:
        page = client.get(f"/jobs?{query}")
        assert page.status_code == 400, query
        assert said in page.text


# -- one run ---------------------------------------------------------------------------------


def test_run_view_shows_the_steps_as_a_timeline_with_the_failing_and_slowest_step_marked(
    client, jm, admin
):
    job = failed_configured_run(jm)
    admin.execute(  # make the first step the slow one, whatever the clock did
        sql.SQL(
            "UPDATE {} SET end_time = start_time + interval '5 seconds'"
            " WHERE job_id = %s AND action = 'copy rows'"
        ).format(table(jm, "job_detail")),
        [job],
    )
    page = client.get(f"/runs/{job}").text
    rows = re.findall(r'<tr class="([^"]+)" id="step-\d+">\s*<td>([^<]+)</td>', page)
    assert rows == [("row-ok slowest", "copy rows"), ("row-critical failed", "analyze facts")]
    assert "ValueError: boom" in page
    assert 'id="run-status">CRITICAL' in page
    widths = re.findall(r'class="bar (\w+)" style="left: ([\d.]+)%; width: ([\d.]+)%', page)
    assert [css for css, _, _ in widths] == ["ok", "critical"]
    assert all(0 <= float(left) <= 100 and 0 < float(width) <= 100 for _, left, width in widths)


def test_run_view_pages_long_runs(client, jm, monkeypatch):
    monkeypatch.setattr(queries, "STEPS_PAGE", 2)
    job = jm.add_job("long")
    steps = [jm.add_step(job, f"step {i}") for i in range(5)]
    first = client.get(f"/runs/{job}").text
    assert re.findall(r'id="step-(\d+)"', first) == [str(s) for s in steps[:2]]
    assert f"?after={steps[1]}" in first
    last = client.get(f"/runs/{job}?after={steps[3]}").text
    assert re.findall(r'id="step-(\d+)"', last) == [str(steps[4])]


def test_an_unknown_run_is_a_404(client):
    page = client.get("/runs/424242")
    assert page.status_code == 404
    assert "no run with job_id 424242" in page.text


def test_a_dag_run_link_opens_its_newest_attempt_and_escapes_like_wildcards(client, jm):
    first = jm.add_job("etl_dag", run_key="airflow:etl_dag/manual__1@2026-11-28T01:00:00Z/x")
    second = jm.add_job("etl_dag", run_key="airflow:etl_dag/manual__1@2026-11-28T02:00:00Z/x")
    jm.add_job("etl_dag", run_key="airflow:etl_dag/manualXX1@2026-11-28T03:00:00Z/x")
    renamed = jm.add_job("custom name", run_key="airflow:other/run_1@2026-11-28T01:00:00Z/x")
    assert first < second
    moved = client.get("/airflow/etl_dag/manual__1", follow_redirects=False)
    assert moved.status_code == 307
    assert moved.headers["location"] == f"/runs/{second}"  # not manualXX1's: _ is literal
    found = client.get("/airflow/other/run_1", follow_redirects=False)
    assert found.headers["location"] == f"/runs/{renamed}"
    missing = client.get("/airflow/etl_dag/never_ran", follow_redirects=False)
    assert missing.status_code == 404
    assert "no jobmon job for DAG run" in missing.text


# -- what the log holds is shown, never run ----------------------------------------------------


def test_names_and_messages_are_escaped(client, jm):
    name = '<script>alert("x")</script> & co'
    job = jm.add_job(name)
    step = jm.add_step(job, "<b>bold</b>")
    jm.update_step(step, "CRITICAL", "<img src=x onerror=alert(1)>")
    jm.fail_job(job)
    for url in ("/jobs", f"/runs/{job}"):
        page = client.get(url).text
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;SCRIPT&gt;ALERT(&#34;X&#34;)&lt;/SCRIPT&gt; &amp; CO" in page


# -- errors and access -----------------------------------------------------------------------


def test_an_unreachable_database_is_a_503_page_without_the_password(jm, monitor_role):
    db = ReadOnlyDatabase(
        "postgresql://someone:s3cretpw@127.0.0.1:1/nothing?connect_timeout=1",
        schema=jm.schema,
        role=monitor_role,
        connect_timeout=1,
    )
    try:
        with TestClient(create_app(db)) as c:
            page = c.get("/")
            assert page.status_code == 503
            assert "cannot reach the jobmon database" in page.text
            assert "s3cretpw" not in page.text
            metrics = c.get("/metrics")
            assert metrics.status_code == 200
            assert "jobmon_up 0.0" in metrics.text
    finally:
        db.close()


def test_a_token_guards_every_view_and_a_url_token_becomes_a_cookie(database):
    with TestClient(create_app(database, token="t0ken-123")) as c:
        for url in ("/", "/jobs", "/metrics", "/runs/1"):
            refused = c.get(url)
            assert refused.status_code == 401, url
            assert "needs its token" in refused.text
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer t0ken-123"}).status_code == 200
        assert c.get("/?token=wrong").status_code == 401
        elsewhere = c.get(
            "http://testserver//evil.example/x?token=t0ken-123", follow_redirects=False
        )
        assert elsewhere.headers["location"] == "/evil.example/x"  # never another site
        c.cookies.clear()
        moved = c.get("/jobs?status=OK&token=t0ken-123", follow_redirects=False)
        assert moved.status_code == 303
        assert moved.headers["location"] == "/jobs?status=OK"
        assert TOKEN_COOKIE in moved.cookies
        assert c.get("/jobs?status=OK").status_code == 200  # the cookie, kept by the client


def test_the_views_answer_with_their_server_time(client):
    assert re.fullmatch(r"app;dur=[\d.]+", client.get("/").headers["server-timing"])


def test_times_are_shown_in_utc(client, jm, admin):
    job = jm.add_job("clock")
    admin.execute(
        sql.SQL("UPDATE {} SET start_time = %s WHERE job_id = %s").format(table(jm, "job_log")),
        [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), job],
    )
    assert "<td>2026-01-02 03:04:05</td>" in client.get("/jobs").text
