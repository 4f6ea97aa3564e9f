"""The context managers: jm.job(...) and job.step(...)."""

from __future__ import annotations

import pytest

from jobmon_core import InvalidArgumentError, Jobmon


def steps(rows) -> list[tuple[str, str, str | None]]:
    return [(d["action"], d["status"], d["message"]) for d in rows("job_detail")]


def test_a_clean_job_closes_everything_ok(jm, rows, work):
    with jm.job("nightly load", conn=work) as job:
        with job.step("copy rows") as step:
            step.message = "42 rows"
        with job.step("analyze"):
            pass
    (row,) = rows("job_log")
    assert (row["job_id"], row["job_name"], row["status"]) == (job.job_id, "NIGHTLY LOAD", "OK")
    assert row["pid"] == work.info.backend_pid
    assert steps(rows) == [("copy rows", "OK", "42 rows"), ("analyze", "OK", None)]


def test_an_exception_in_a_step_fails_step_and_job_and_propagates(jm, rows):
    with pytest.raises(ValueError, match="boom"), jm.job("failing") as job:
        with job.step("fine"):
            pass
        with job.step("explodes"):
            raise ValueError("boom")
    assert rows("job_log")[0]["status"] == "CRITICAL"
    assert steps(rows) == [("fine", "OK", None), ("explodes", "CRITICAL", "ValueError: boom")]
    assert [r["alert_code"] for r in rows("job_check_log")] == [3]


def test_an_exception_outside_any_step_still_leaves_a_step(jm, rows):
    with pytest.raises(KeyError), jm.job("early"):
        raise KeyError("missing")
    with pytest.raises(RuntimeError), jm.job("between") as job:
        with job.step("one"):
            pass
        raise RuntimeError
    details = steps(rows)
    assert details == [
        ("EXCEPTION before first step logged", "CRITICAL", "KeyError: 'missing'"),
        ("one", "OK", None),
        ("EXCEPTION outside a step", "CRITICAL", "RuntimeError"),
    ]


def test_a_step_can_choose_its_status_and_the_job_its_level(jm, rows):
    with jm.job("warned") as job:
        with job.step("slow") as step:
            step.status = "WARNING"
            step.update("RUNNING", "half way")
        job.fail(2)
    assert rows("job_log")[0]["status"] == "WARNING"
    assert steps(rows) == [("slow", "WARNING", None)]


def test_a_caught_step_failure_does_not_fail_the_job(jm, rows):
    with jm.job("resilient") as job:
        with pytest.raises(ZeroDivisionError), job.step("optional"):
            1 / 0  # noqa: B018
        with job.step("main"):
            pass
    assert rows("job_log")[0]["status"] == "OK"
    assert steps(rows)[0] == ("optional", "CRITICAL", "ZeroDivisionError: division by zero")


def test_the_users_exception_wins_over_a_logging_failure(jm, rows, admin):
    with pytest.raises(ValueError, match="user error") as caught, jm.job("doomed") as job:
        with job.step("s"):
            pass
        # the jobmon tables go away mid-job: logging the failure now fails
        rows.execute("ALTER TABLE job_log RENAME TO job_log_gone")
        raise ValueError("user error")
    assert any("pg-jobmon could not log this failure" in n for n in caught.value.__notes__)
    rows.execute("ALTER TABLE job_log_gone RENAME TO job_log")


def test_context_managers_refuse_misuse(jm):
    job = jm.job("x")
    with pytest.raises(InvalidArgumentError, match="use the job as a context manager"):
        job.step("s")
    with jm.job("y") as entered:
        step = entered.step("s")
        with pytest.raises(InvalidArgumentError, match="use the step as a context manager"):
            step.update("OK")
    with pytest.raises(InvalidArgumentError, match="job name must not be empty"):
        jm.job("")


def test_nul_bytes_in_exception_text_are_made_visible(jm, rows):
    with pytest.raises(ValueError), jm.job("nul") as job, job.step("s"):
        raise ValueError("a\x00b")
    assert steps(rows)[0][2] == "ValueError: a\\x00b"


def test_keyboard_interrupt_is_logged_too(jm, rows):
    with pytest.raises(KeyboardInterrupt), jm.job("interrupted") as job, job.step("s"):
        raise KeyboardInterrupt
    assert rows("job_log")[0]["status"] == "CRITICAL"


def test_public_names(jm):
    assert isinstance(jm, Jobmon)
