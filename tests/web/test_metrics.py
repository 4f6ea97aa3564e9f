"""GET /metrics and the metrics text: each metric's samples and values, parsed back by
prometheus_client's own parser, whatever the job names hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from jobmon_web.metrics import METRIC_NAMES, STEP_LABEL_CHARS, STEPS_PER_JOB, scrape

from .conftest import failed_configured_run, table


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value}, from the exposition text."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by_job(metric: dict, **extra: str) -> dict[str, float]:
    return {dict(labels)["job_name"]: value for labels, value in metric.items()}


def test_a_healthy_log_has_one_ok_alert_row_with_an_empty_job_name(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)
    assert got["jobmon_up"] == {(): 1.0}
    assert got["jobmon_check_alert_code"] == {(("alert_status", "OK"), ("job_name", "")): 1.0}
    assert set(got) <= set(METRIC_NAMES)


def series(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every sample's (name, labels), repeats kept: a repeat is invalid exposition."""
    return [
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def test_each_metric_reads_the_log(step_client, jm, admin):
    client = step_client
    ok = jm.add_job("nightly load")
    jm.close_job(ok)
    failed = failed_configured_run(jm, "nightly load")
    jm.add_job("export")
    jm.add_job("export")
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    moments = {  # both before the 24-hour window of jobmon_job_runs_window
        ok: (day, day + timedelta(minutes=30)),
        failed: (day + timedelta(days=1), day + timedelta(days=1, minutes=2)),
    }
    for job_id, (start, end) in moments.items():
        admin.execute(
            sql.SQL("UPDATE {} SET start_time = %s, end_time = %s WHERE job_id = %s").format(
                table(jm, "job_log")
            ),
            [start, end, job_id],
        )
    got = samples(client.get("/metrics").text)
    assert set(got) == set(METRIC_NAMES)  # every metric named in monitoring/ is exported
    alerts = got["jobmon_check_alert_code"]
    assert alerts == {  # one sample per check_job_status row (its last run is 2 days old)
        (("alert_status", "FAILED_RUN"), ("job_name", "NIGHTLY LOAD")): 3.0,
        (("alert_status", "MISSING"), ("job_name", "NIGHTLY LOAD")): 2.0,
    }
    assert by_job(got["jobmon_job_last_success_timestamp_seconds"]) == {
        "NIGHTLY LOAD": moments[ok][1].timestamp()
    }
    assert by_job(got["jobmon_job_last_duration_seconds"]) == {"NIGHTLY LOAD": 120.0}
    assert by_job(got["jobmon_job_last_status_ok"]) == {"NIGHTLY LOAD": 0.0}
    assert by_job(got["jobmon_job_running"]) == {"NIGHTLY LOAD": 0.0, "EXPORT": 2.0}
    window = {tuple(dict(k).values()): v for k, v in got["jobmon_job_runs_window"].items()}
    assert window == {("EXPORT", "RUNNING"): 2.0}  # the dated runs started before the window
    steps = {dict(k)["step"]: v for k, v in got["jobmon_job_last_step_duration_seconds"].items()}
    assert set(steps) == {"copy rows", "analyze facts"}
    assert all(v >= 0 for v in steps.values())


def test_a_job_failing_at_two_levels_is_one_series_at_its_worst_code(client, jm):
    name = "twice failed"
    jm.configure_check(name, warn=timedelta(hours=25), error=timedelta(hours=49))
    jm.fail_job(jm.add_job(name), level=2)  # a WARNING failure
    jm.fail_job(jm.add_job(name), level=3)  # and a CRITICAL one: two FAILED_RUN rows
    rows = [a for a in jm.check_job_status() if a.job_name == "TWICE FAILED"]
    assert sorted(a.alert_code for a in rows) == [2, 3]  # check_job_status: a row per level
    assert {a.alert_status for a in rows} == {"FAILED_RUN"}
    text = client.get("/metrics").text
    found = series(text)
    assert len(found) == len(set(found)), "a label set appears twice"
    codes = samples(text)["jobmon_check_alert_code"]
    assert codes == {(("alert_status", "FAILED_RUN"), ("job_name", "TWICE FAILED")): 3.0}


def test_the_step_metric_is_opt_in_cut_and_bounded(client, step_client, jm):
    job = jm.add_job("many steps")
    long_action = "Running sql: SELECT " + "x, " * 60 + "y FROM t"
    for i in range(STEPS_PER_JOB + 5):
        step = jm.add_step(job, long_action if i == 0 else f"step {i}")
        jm.update_step(step, "OK", "done")
    jm.close_job(job)
    assert "jobmon_job_last_step_duration_seconds" not in client.get("/metrics").text
    got = samples(step_client.get("/metrics").text)
    steps = [dict(k)["step"] for k in got["jobmon_job_last_step_duration_seconds"]]
    assert len(steps) == STEPS_PER_JOB
    assert long_action[:STEP_LABEL_CHARS] in steps
    assert max(map(len, steps)) == STEP_LABEL_CHARS


def test_the_running_metric_says_it_counts_orphans_too(client):
    text = client.get("/metrics").text
    assert "# HELP jobmon_job_running Open runs of the job" in text
    assert "including orphans whose process died" in text


def test_label_values_are_escaped_whatever_the_job_name_holds(client, jm):
    names = ['quote " here', "back\\slash", "new\nline", "ünï €"]
    jm.configure_check(names[0], warn=timedelta(hours=1), error=timedelta(hours=2))
    for name in names:
        jm.fail_job(jm.add_job(name))
    text = client.get("/metrics").text
    got = samples(text)
    assert set(by_job(got["jobmon_job_last_duration_seconds"])) == {n.upper() for n in names}
    assert ('job_name="QUOTE \\" HERE"') in text
    assert ('job_name="NEW\\nLINE"') in text


def test_scrape_says_whether_the_schema_was_read(database, jm):
    text, up = scrape(database)
    assert up
    assert b"jobmon_up 1.0" in text
