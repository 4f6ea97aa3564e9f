"""monitoring/: every PromQL expression of the alert rules and of the Grafana dashboard
parses (promql-parser, the Rust parser of GreptimeDB, the same grammar as Prometheus), and
every metric their parsed trees read is in a real scrape of a real log."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (Airflow's), no stubs here
from prometheus_client.parser import text_string_to_metric_families

from jobmon_web.metrics import METRIC_NAMES

from .conftest import failed_configured_run

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
TEMPLATE_QUERY = re.compile(r'\bquery "(?P<expr>[^"]+)"')
"""A query an alert's annotation runs (Prometheus templates: ``{{ with query "..." }}``)."""
LABEL_VALUES = re.compile(r"label_values\((?P<expr>.+),\s*(?P<label>\w+)\)")


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "jobmon-alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads((MONITORING / "grafana-dashboard.json").read_text()))


def dashboard_exprs() -> list[str]:
    """The panels' queries, and the PromQL inside each ``label_values(expr, label)``
    variable (the wrapper is Grafana's, not PromQL)."""
    board = dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            found = LABEL_VALUES.fullmatch(variable["definition"])
            assert found, variable["definition"]
            exprs.append(found["expr"])
    return exprs


def metrics_read(expr: str) -> set[str]:
    """The metric names an expression selects, from its parsed tree (a ValueError when it
    does not parse)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


@pytest.fixture
def exported(step_client, jm) -> set[str]:
    """The metric names of a real scrape (step metric on) of a log with every kind of run."""
    ok = jm.add_job("nightly load")
    jm.update_step(jm.add_step(ok, "copy rows"), "OK", "done")
    jm.close_job(ok)
    failed_configured_run(jm, "nightly load")
    jm.add_job("export")  # open
    text = step_client.get("/metrics").text
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert names == set(METRIC_NAMES)
    return names


def test_a_bad_expression_does_not_parse():
    with pytest.raises(ValueError):
        metrics_read("max(jobmon_up")
    with pytest.raises(ValueError):
        metrics_read("jobmon_up >")


def test_the_alert_rules_parse_and_read_only_exported_metrics(exported):
    found = rules()
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names))
    used: set[str] = set()
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        read = metrics_read(rule["expr"])
        assert read, rule["expr"]
        used |= read
        for text in rule["annotations"].values():
            for query in TEMPLATE_QUERY.finditer(text):
                used |= metrics_read(query["expr"])
    assert "jobmon_up" in used
    assert used <= exported, used - exported
    critical = next(r for r in found if r["alert"] == "JobmonCritical")
    assert critical["expr"] == "max(jobmon_check_alert_code) >= 3"  # the alert


def test_the_grafana_dashboard_queries_parse_and_read_only_exported_metrics(exported):
    board = dashboard()
    assert board["uid"] == "pg-jobmon"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for expr in dashboard_exprs():
        read = metrics_read(expr)
        assert read, expr
        used |= read
    assert used <= exported, used - exported
    # the dashboard shows the four metrics the issue asks for
    assert {
        "jobmon_check_alert_code",
        "jobmon_job_last_success_timestamp_seconds",
        "jobmon_job_last_duration_seconds",
        "jobmon_job_running",
    } <= used
