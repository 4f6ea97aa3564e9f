"""The example flows of flows_examples/, run for real as a user would run them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from flows_examples.etl_orders import etl_orders
from flows_examples.jobmon_monitoring import jobmon_monitoring
from flows_examples.partition_steps import partition_maintenance

from .test_hooks import steps, the_job


def orders(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        [(count,)] = conn.execute("SELECT count(*) FROM public.orders").fetchall()
        return int(count)


def test_the_etl_retries_its_extract_and_a_failed_load_rolls_back_but_keeps_its_steps(logged, dsn):
    state = etl_orders(rows=10, return_state=True)
    assert state.is_completed()
    job = the_job(logged, state)
    assert (job.job_name, job.status) == ("ETL-ORDERS", "OK")
    assert [s[:2] for s in steps(logged, job.job_id)] == [
        ("prepare [try 1]", "OK"),
        ("extract [try 1]", "WARNING"),
        ("extract [try 2]", "OK"),
        ("load [try 1]", "OK"),
    ]
    before = orders(dsn)
    state = etl_orders(rows=10, fail=True, return_state=True)
    assert state.is_failed()
    assert orders(dsn) == before  # the load's transaction rolled back...
    job = the_job(logged, state)
    assert job.status == "CRITICAL"
    logged_steps = steps(logged, job.job_id)  # ...and the log kept every step
    assert logged_steps[3] == (
        "load [try 1]",
        "CRITICAL",
        "ValueError: 1 order(s) with a negative amount",
    )
    assert logged_steps[-1][:2] == ("flow run failed", "CRITICAL")


def test_the_writer_inside_a_task_logs_a_job_of_its_own(logged, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.orders (id serial, amount numeric)")
    state = partition_maintenance(return_state=True)
    assert state.is_completed()
    inner = state.result()
    assert [(s.action, s.status, s.message) for s in logged.show_detail(inner)] == [
        ("create orders_next", "OK", "public.orders_next ready"),
        ("analyze orders", "OK", "statistics refreshed"),
    ]
    assert the_job(logged, state).status == "OK"


def test_the_monitoring_flow_waits_for_the_etl_and_fails_on_its_failure(logged):
    since = datetime.now(UTC) - timedelta(seconds=1)
    assert etl_orders(rows=1, return_state=True).is_completed()
    state = jobmon_monitoring(since=since, wait_timeout=10, return_state=True)
    assert state.is_completed(), state.message
    assert etl_orders(rows=1, fail=True, return_state=True).is_failed()
    state = jobmon_monitoring(upstream_job=None, return_state=True)  # ETL-ORDERS: 1 failure
    assert state.is_failed()
    assert "ETL-ORDERS" in (state.message or "")
