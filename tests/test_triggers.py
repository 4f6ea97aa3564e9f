"""The monitoring triggers: the same side effects through the API and through hand-written SQL."""

from __future__ import annotations

import pytest


def check_log(rows) -> list[tuple[str, int]]:
    return [(r["job_name"], r["alert_code"]) for r in rows("job_check_log")]


def test_failures_add_rows_and_a_success_wipes_the_name(jm, rows):
    for _ in range(2):
        jm.fail_job(jm.add_job("flaky"))
    jm.fail_job(jm.add_job("flaky"), 2)
    jm.fail_job(jm.add_job("other"))
    assert sorted(check_log(rows)) == [("FLAKY", 2), ("FLAKY", 3), ("FLAKY", 3), ("OTHER", 3)]
    jm.close_job(jm.add_job("flaky"))
    assert check_log(rows) == [("OTHER", 3)]


def test_hand_written_updates_fire_the_same_side_effects(jm, rows):
    job = jm.add_job("by hand")
    rows.execute(
        "UPDATE job_log SET status = 'CRITICAL', end_time = now() WHERE job_id = %s", [job]
    )
    assert check_log(rows) == [("BY HAND", 3)]
    # every update counts, whatever changed (upstream: a repeated update is another failure)
    rows.execute("UPDATE job_log SET end_time = now() WHERE job_id = %s", [job])
    assert check_log(rows) == [("BY HAND", 3), ("BY HAND", 3)]
    rows.execute("UPDATE job_log SET status = 'WARNING' WHERE job_id = %s", [job])
    assert sorted(check_log(rows)) == [("BY HAND", 2), ("BY HAND", 3), ("BY HAND", 3)]
    rows.execute("UPDATE job_log SET status = 'OK' WHERE job_id = %s", [job])
    assert check_log(rows) == []


def test_unknown_texts_and_null_status_are_ignored(jm, rows):
    job = jm.add_job("ignored")
    rows.execute("UPDATE job_log SET status = 'NO SUCH TEXT' WHERE job_id = %s", [job])
    rows.execute("UPDATE job_log SET status = NULL WHERE job_id = %s", [job])
    rows.execute("UPDATE job_log SET status = 'ESCALATED' WHERE job_id = %s", [job])
    assert check_log(rows) == []


def test_renamed_texts_are_followed(jm, rows):
    rows.execute("UPDATE job_status_text SET alert_text = 'BAD' WHERE alert_code = 3")
    job = jm.add_job("renamed")
    jm.fail_job(job)
    assert rows("job_log")[0]["status"] == "BAD"
    assert check_log(rows) == [("RENAMED", 3)]


def _escalating(rows, escalate: int, *, active: bool = True) -> None:
    rows.execute(
        "INSERT INTO job_status_text VALUES (4, 'PG_JOBMON TEST ALERT LEVEL'),"
        " (5, 'PG_JOBMON TEST ALERT LEVEL')"
    )
    rows.execute(
        "INSERT INTO job_check_config (job_name, warn_threshold, error_threshold, active, escalate)"
        " VALUES ('WARNING JOB', '1 day', '2 days', %s, %s)",
        [active, escalate],
    )


def test_escalation_follows_upstreams_test04(jm, rows):
    """Upstream's test04: escalate = 3, codes up to 5, the job failing at level 2 each run."""
    _escalating(rows, 3)
    jm.fail_job(jm.add_job("warning job"), 2)  # test02 had already failed it once
    maxima = []
    for _ in range(9):
        jm.fail_job(jm.add_job("warning job"), 2)
        maxima.append(max(code for _, code in check_log(rows)))
    # upstream checks the maximum after runs 2, 5 and 9 (it had one failure already)
    assert (maxima[1], maxima[4], maxima[8]) == (3, 4, 5)
    # and the exact rule: the failure reaching `escalate` at the top level goes up one
    assert sorted(code for _, code in check_log(rows)) == [2, 2, 3, 3, 4, 4, 5, 5, 5, 5]


def test_an_escalation_is_logged_as_a_step_and_marks_the_run(jm, rows):
    _escalating(rows, 2)
    first = jm.add_job("warning job")
    jm.fail_job(first, 2)  # the first failure never escalates
    second = jm.add_job("warning job")
    jm.fail_job(second, 2)
    statuses = {r["job_id"]: r["status"] for r in rows("job_log")}
    assert statuses == {first: "WARNING", second: "ESCALATED"}
    (step,) = rows("job_detail")
    assert (step["job_id"], step["action"], step["status"]) == (
        second,
        "ALERT ESCALATION",
        "ESCALATE",
    )
    assert step["message"] == (
        "Job has alerted at level 2 in excess of the escalate value configured for this job (2)."
        " Alert code value has been escaleted to: 3"
    )


@pytest.mark.parametrize("active", [True, False])
def test_escalation_ignores_active_and_escalate_1_skips_the_first_failure(jm, rows, active):
    _escalating(rows, 1, active=active)
    jm.fail_job(jm.add_job("warning job"), 2)
    assert check_log(rows) == [("WARNING JOB", 2)]
    jm.fail_job(jm.add_job("warning job"), 2)
    assert sorted(check_log(rows)) == [("WARNING JOB", 2), ("WARNING JOB", 3)]


def test_escalation_stops_at_the_highest_code(jm, rows):
    _escalating(rows, 1)
    for _ in range(8):
        jm.fail_job(jm.add_job("warning job"), 2)
    assert max(code for _, code in check_log(rows)) == 5


def test_hand_inserted_check_rows_escalate_too(jm, rows):
    _escalating(rows, 2)
    job = jm.add_job("warning job")
    rows.execute(
        "INSERT INTO job_check_log (job_id, job_name, alert_code) VALUES (%s, 'WARNING JOB', 2)",
        [job],
    )
    rows.execute(
        "INSERT INTO job_check_log (job_id, job_name, alert_code) VALUES (%s, 'WARNING JOB', 2)",
        [job],
    )
    assert sorted(check_log(rows)) == [("WARNING JOB", 2), ("WARNING JOB", 3)]
    assert rows("job_log")[0]["status"] == "ESCALATED"
