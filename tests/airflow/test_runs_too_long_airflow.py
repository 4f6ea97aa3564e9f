"""Runs too long (issue #15) in Airflow: the check operator and the check sensor fail on a
run past its duration limit like on any other alert, at the level the limit sets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from .conftest import load_dag_module


@pytest.fixture(scope="module")
def check_dags():
    return load_dag_module("provider_check")


def _run(rows, name: str, ago: str, took: str) -> None:
    rows.execute(
        "INSERT INTO job_log (owner, job_name, start_time, end_time, status, pid)"
        " VALUES (current_user, %s, now() - %s::interval, now() - %s::interval + %s::interval,"
        " 'OK', 0)",
        [name, ago, ago, took],
    )


def test_a_run_past_its_error_duration_fails_the_monitoring_dag(jobmon_conn, jm, rows, check_dags):
    jm.configure_check(
        "nightly load",
        warn=timedelta(days=1),
        error=timedelta(days=2),
        warn_duration=timedelta(hours=1),
        error_duration=timedelta(hours=2),
    )
    _run(rows, "NIGHTLY LOAD", "4 hours", "90 minutes")  # WARNING: RAN_TOO_LONG
    assert check_dags.check_dag.test().state == "success"
    assert check_dags.warn_dag.test().state == "failed"
    _run(rows, "NIGHTLY LOAD", "3 hours", "150 minutes")  # CRITICAL
    assert check_dags.check_dag.test().state == "failed"
    assert check_dags.sensor_dag.test().state == "failed"
