"""The example DAGs a user copies: they parse, and each runs for real under dag.test()."""

from __future__ import annotations

import psycopg
import pytest

from .conftest import EXAMPLES, load_dag_module

EXAMPLE_DAGS = {
    "etl_orders": "etl_orders",
    "jobmon_monitoring": "jobmon_monitoring",
    "custom_operator_steps": "partition_maintenance",
    "sql_job": "daily_order_summary",
}


@pytest.fixture(autouse=True)
def clean_tables(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("orders", "orders_next", "order_summary"):
            conn.execute(
                psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(
                    psycopg.sql.Identifier("public", table)
                )
            )


def test_every_example_parses_without_import_errors(airflow_db):
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(EXAMPLE_DAGS.values())


def test_every_example_module_says_what_it_shows():
    for name in EXAMPLE_DAGS:
        text = (EXAMPLES / f"{name}.py").read_text()
        assert text.startswith('"""'), name
        assert "Shows:" in text, name


def test_the_etl_example_logs_a_retry_and_a_rolled_back_failure(jobmon_conn, jm):
    dag = load_dag_module("etl_orders").dag
    assert dag.test(run_conf={"fail": False, "rows": 10}).state == "success"
    assert dag.test(run_conf={"fail": True, "rows": 10}).state == "failed"
    good, bad = reversed(jm.show_job("etl_orders"))
    assert (good.status, bad.status) == ("OK", "CRITICAL")
    assert {s.action: s.status for s in jm.show_detail(good.job_id)} == {
        "prepare [try 1]": "OK",
        "extract [try 1]": "WARNING",
        "extract [try 2]": "OK",
        "load [try 1]": "OK",
    }
    assert [(s.action, s.status) for s in jm.show_detail(bad.job_id)][-2:] == [
        ("load [try 1]", "CRITICAL"),
        ("DAG run failed", "CRITICAL"),
    ]


def test_the_monitoring_example_passes_when_healthy_and_fails_on_critical(jobmon_conn, jm):
    etl = load_dag_module("etl_orders").dag
    monitoring = load_dag_module("jobmon_monitoring").dag
    assert etl.test(run_conf={"fail": False, "rows": 10}).state == "success"
    assert monitoring.test().state == "success"
    (config,) = jm.list_checks()
    assert config.job_name == "ETL_ORDERS"
    assert etl.test(run_conf={"fail": True, "rows": 10}).state == "failed"
    assert monitoring.test().state == "failed"


def test_the_custom_operator_example_logs_its_sub_steps(jobmon_conn, jm, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id serial, amount numeric)")
    assert load_dag_module("custom_operator_steps").dag.test().state == "success"
    (job,) = jm.show_job("partition maintenance")
    assert job.status == "OK"
    assert [(s.action, s.status) for s in jm.show_detail(job.job_id)] == [
        ("create orders_next", "OK"),
        ("analyze orders", "OK"),
    ]


def test_the_sql_example_logs_each_statement(jobmon_conn, jm, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id serial, amount numeric)")
        conn.execute("INSERT INTO public.orders (amount) VALUES (1), (2)")
    assert load_dag_module("sql_job").dag.test().state == "success"
    (job,) = jm.show_job("daily order summary")
    assert [s.message for s in jm.show_detail(job.job_id)] == [
        "Rows affected: 0",
        "Rows affected: 0",
        "Rows affected: 1",
    ]


def test_the_monitoring_example_waits_for_runs_since_midnight_exactly(airflow_db):
    """#13.6: the sensor's ``since`` used to keep the interval start's microseconds, so a
    run started in the first fraction of a second after midnight did not count."""
    import pendulum

    from jobmon_core.check_tasks import as_datetime

    sensor = load_dag_module("jobmon_monitoring").dag.get_task("wait_for_todays_etl")
    start = pendulum.datetime(2026, 3, 4, 10, 11, 12, 123456, tz="UTC")
    rendered = sensor.render_template(sensor.since, {"data_interval_start": start})
    assert as_datetime(rendered) == pendulum.datetime(2026, 3, 4, tz="UTC")
