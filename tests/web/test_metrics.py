"""GET /metrics and the metrics text: each metric's samples and values, parsed back by
prometheus_client's own parser, whatever the job names hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from jobmon_web.metrics import METRIC_NAMES, scrape

from .conftest import failed_configured_run


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


def test_each_metric_reads_the_log(client, jm, admin):
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
            f"UPDATE {jm.schema}.job_log SET start_time = %s, end_time = %s WHERE job_id = %s",
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
