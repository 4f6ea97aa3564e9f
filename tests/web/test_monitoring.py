"""monitoring/: the Prometheus alert rules parse, the Grafana dashboard is a dashboard, and
every metric either names is one pg-jobmon exports (jobmon_web.metrics.METRIC_NAMES, which
test_metrics checks against a real scrape)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # PyYAML (Airflow's), no stubs here

from jobmon_web.metrics import METRIC_NAMES

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
METRIC = re.compile(r"\bjobmon_[a-z_]+\b")


def balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1, "{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def named_metrics(expr: str) -> set[str]:
    """The jobmon metrics an expression reads (label names such as job_name do not match:
    they do not start with jobmon_)."""
    return set(METRIC.findall(expr))


def test_the_alert_rules_parse_and_name_only_exported_metrics():
    rules = yaml.safe_load((MONITORING / "jobmon-alerts.yml").read_text())
    (group,) = rules["groups"]
    assert group["name"] == "pg-jobmon"
    names = [rule["alert"] for rule in group["rules"]]
    assert len(names) == len(set(names))
    assert "JobmonCritical" in names
    used: set[str] = set()
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert balanced(rule["expr"]), rule["expr"]
        texts = [rule["expr"], *rule["annotations"].values()]
        used |= set().union(*map(named_metrics, texts))
    assert used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    critical = next(r for r in group["rules"] if r["alert"] == "JobmonCritical")
    assert critical["expr"] == "max(jobmon_check_alert_code) >= 3"  # the alert


def test_the_grafana_dashboard_queries_only_exported_metrics():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] == "pg-jobmon"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = set().union(*map(named_metrics, exprs))
    assert all(balanced(e) for e in exprs)
    assert used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    # the dashboard shows the four metrics the issue asks for
    assert {
        "jobmon_check_alert_code",
        "jobmon_job_last_success_timestamp_seconds",
        "jobmon_job_last_duration_seconds",
        "jobmon_job_running",
    } <= used
