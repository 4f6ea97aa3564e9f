"""Prometheus metrics of the log and of ``check_job_status``, in the exposition format.

Served at ``GET /metrics`` and printed by ``jobmon metrics`` (for node_exporter's textfile
collector). Everything is read at scrape time in one read-only transaction (nothing is kept
between scrapes, so several replicas or a cron job give the same numbers), and written by
``prometheus_client``, which escapes label values whatever a job name holds. If the
database cannot be read, the scrape still answers: ``jobmon_up 0`` and the reason on the
log, so an alert on ``jobmon_up == 0`` catches it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobmon_core.alerts import Alert
from jobmon_core.checker import fetch_alerts
from jobmon_core.errors import JobmonError

from . import queries
from .database import ReadOnlyDatabase

logger = logging.getLogger("jobmon_web")

WINDOW = timedelta(hours=24)
"""The window of ``jobmon_job_runs_window``: the runs started in the last 24 hours."""

STEP_LABEL_CHARS = 60
"""A step's ``action`` is cut to this many characters in the ``step`` label."""
STEPS_PER_JOB = 20
"""At most this many steps (the first ones of the newest finished run) per job."""

METRIC_NAMES = (
    "jobmon_up",
    "jobmon_scrape_duration_seconds",
    "jobmon_check_alert_code",
    "jobmon_job_last_success_timestamp_seconds",
    "jobmon_job_last_duration_seconds",
    "jobmon_job_last_status_ok",
    "jobmon_job_running",
    "jobmon_job_runs_window",
    "jobmon_job_last_step_duration_seconds",
)
"""Every metric this module writes (the alert rules' test checks they name only these)."""


@dataclass
class Snapshot:
    """What one scrape read, in one transaction."""

    alerts: list[Alert]
    ok_text: str
    summaries: list[queries.JobSummary]
    running: dict[str, int]
    window: list[tuple[str, str, int]]
    steps: list[tuple[int, str, float]]  # empty unless the step metric was asked for
    by_job_id: dict[int, str] = field(default_factory=dict)


def read_snapshot(conn: psycopg.Connection, schema: str, step_metrics: bool = False) -> Snapshot:
    """One scrape's reads; the steps only with ``step_metrics`` (their labels are the
    steps' action texts, which may hold dates or SQL: opt-in, see :func:`families`)."""
    ok = queries.ok_text(conn, schema)
    summaries = queries.job_summaries(conn, schema, ok)
    last_runs = {s.last_job_id: s.job_name for s in summaries if s.last_job_id is not None}
    return Snapshot(
        alerts=fetch_alerts(conn, schema),
        ok_text=ok,
        summaries=summaries,
        running=queries.open_runs(conn, schema),
        window=queries.window_counts(conn, schema, WINDOW),
        steps=queries.last_steps(conn, schema, list(last_runs), STEPS_PER_JOB)
        if step_metrics
        else [],
        by_job_id=last_runs,
    )


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def families(snapshot: Snapshot | None, took: float) -> Iterator[Metric]:
    """The metric families of one scrape (``snapshot`` None: the database was not read)."""
    up = GaugeMetricFamily("jobmon_up", "1 if the jobmon schema could be read, else 0")
    up.add_metric([], 0 if snapshot is None else 1)
    yield up
    duration = GaugeMetricFamily(
        "jobmon_scrape_duration_seconds", "Time taken to read the metrics from PostgreSQL"
    )
    duration.add_metric([], took)
    yield duration
    if snapshot is None:
        return
    yield _alert_codes(snapshot.alerts)
    success = GaugeMetricFamily(
        "jobmon_job_last_success_timestamp_seconds",
        "End time of the newest OK run of the job (Unix time)",
        labels=["job_name"],
    )
    last = GaugeMetricFamily(
        "jobmon_job_last_duration_seconds",
        "Duration of the newest finished run of the job",
        labels=["job_name"],
    )
    last_ok = GaugeMetricFamily(
        "jobmon_job_last_status_ok",
        "1 if the newest finished run of the job ended OK, else 0",
        labels=["job_name"],
    )
    for s in snapshot.summaries:
        if s.last_success is not None:
            success.add_metric([s.job_name], _seconds(s.last_success))
        if s.last_end is not None and s.last_start is not None:
            last.add_metric([s.job_name], (s.last_end - s.last_start).total_seconds())
            last_ok.add_metric([s.job_name], 1 if s.last_status == snapshot.ok_text else 0)
    yield from (success, last, last_ok)
    running = GaugeMetricFamily(
        "jobmon_job_running",
        "Open runs of the job (started, not finished), including orphans whose process "
        "died without ending them (show_running lists the live ones)",
        labels=["job_name"],
    )
    for s in snapshot.summaries:
        running.add_metric([s.job_name], snapshot.running.get(s.job_name, 0))
    yield running
    window = GaugeMetricFamily(
        "jobmon_job_runs_window",
        f"Runs of the job started in the last {int(WINDOW.total_seconds() // 3600)} hours, "
        "by status (RUNNING: not finished)",
        labels=["job_name", "status"],
    )
    for name, status, count in snapshot.window:
        window.add_metric([name, status], count)
    yield window
    if snapshot.steps:
        yield _step_durations(snapshot)


def _alert_codes(alerts: list[Alert]) -> Metric:
    """``check_job_status`` as one sample per (job_name, alert_status): a job may have
    several rows with the same pair (a WARNING and a CRITICAL failure are two FAILED_RUN
    rows), and a repeated label set is invalid exposition, so the pair keeps its worst code."""
    worst: dict[tuple[str, str], int] = {}
    for alert in alerts:
        labels = (alert.job_name or "", alert.alert_status or "")
        worst[labels] = max(alert.alert_code, worst.get(labels, alert.alert_code))
    family = GaugeMetricFamily(
        "jobmon_check_alert_code",
        "check_job_status, the worst code per job and alert_status (1 OK, 2 WARNING, "
        "3 CRITICAL, above: custom); the all-OK row has an empty job_name",
        labels=["job_name", "alert_status"],
    )
    for (job_name, status), code in worst.items():
        family.add_metric([job_name, status], code)
    return family


def _step_durations(snapshot: Snapshot) -> Metric:
    """The opt-in step metric. Its ``step`` label is the step's action, cut to
    STEP_LABEL_CHARS, for the first STEPS_PER_JOB steps: actions that hold dates or SQL
    make new series at each run, which is why it is off unless asked for."""
    family = GaugeMetricFamily(
        "jobmon_job_last_step_duration_seconds",
        f"Duration of each step of the newest finished run of the job (first {STEPS_PER_JOB} "
        f"steps, action cut to {STEP_LABEL_CHARS} characters; opt-in: --step-metrics)",
        labels=["job_name", "step"],
    )
    seen: set[tuple[str, str]] = set()
    for job_id, action, seconds in snapshot.steps:
        labels = (snapshot.by_job_id[job_id], action[:STEP_LABEL_CHARS])
        if labels not in seen:  # a repeated action keeps its first step: one sample a pair
            seen.add(labels)
            family.add_metric(list(labels), seconds)
    return family


class JobmonCollector(Collector):
    """A prometheus_client collector reading the jobmon schema at each scrape."""

    def __init__(self, database: ReadOnlyDatabase, step_metrics: bool = False) -> None:
        self._database = database
        self._step_metrics = step_metrics
        self.up = False  # whether the last collect read the schema

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        snapshot: Snapshot | None
        try:
            snapshot = self._database.read(
                lambda conn: read_snapshot(conn, self._database.schema, self._step_metrics)
            )
        except JobmonError as exc:
            logger.warning("jobmon metrics: cannot read the jobmon schema: %s", exc)
            snapshot = None
        self.up = snapshot is not None
        yield from families(snapshot, time.perf_counter() - started)


def scrape(database: ReadOnlyDatabase, step_metrics: bool = False) -> tuple[bytes, bool]:
    """The metrics as Prometheus exposition text (what ``/metrics`` serves), and whether
    the schema could be read (``jobmon_up``)."""
    collector = JobmonCollector(database, step_metrics)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry), collector.up


def exposition(database: ReadOnlyDatabase, step_metrics: bool = False) -> bytes:
    """The exposition text alone, for ``GET /metrics``."""
    return scrape(database, step_metrics)[0]
