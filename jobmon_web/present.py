"""How the page shows rows: status colours, times, durations, the small charts and the
run timeline. Pure functions of the rows, so the templates stay free of arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

from jobmon_core.alerts import CRITICAL, OK, WARNING, Alert, worst
from jobmon_core.durations import format_duration
from jobmon_core.reports import JobRecord, StepRecord

from .queries import SparkRun

LEVEL_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}


def level_name(code: int) -> str:
    """OK, WARNING, CRITICAL; a custom code above 3 counts as CRITICAL, as in Nagios."""
    return LEVEL_NAMES.get(code, "CRITICAL")


def health_level(alerts: list[Alert]) -> tuple[int, str]:
    code = worst(alerts)
    return code, level_name(code)


def status_class(status: str | None) -> str:
    """The CSS class of a run or step status: ok, warning, critical, running, other."""
    if status is None:
        return "running"
    return {"OK": "ok", "WARNING": "warning", "CRITICAL": "critical"}.get(status, "other")


def when(moment: datetime | None) -> str:
    """A time as the page shows it: UTC, to the second (the header says UTC)."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime, end: datetime | None, now: datetime) -> str:
    """A run's duration; an open run's time so far, marked with a trailing ellipsis."""
    if end is None:
        return format_duration(now - start) + " …"
    return format_duration(end - start)


def seconds(value: timedelta | float | None) -> str:
    return format_duration(value)


SPARK_WIDTH, SPARK_HEIGHT, SPARK_BAR = 100, 18, 5


def spark_svg(runs: list[SparkRun], now: datetime, root: str) -> Markup:
    """A job's small chart as inline SVG, oldest run on the left: bar height = duration (an
    open run counts its time so far; every run gets at least a sliver, so a failure never
    disappears), colour = outcome, each bar a link to its run with a tooltip.

    Built here rather than in the template: a page of 50 jobs has 1,000 bars, and
    rendering them through Jinja2's escaping tripled the page's time."""
    lengths = [((r.end_time or now) - r.start_time).total_seconds() for r in runs]
    longest = max(lengths, default=0.0) or 1.0
    parts = [
        f'<svg width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" viewBox="0 0 {SPARK_WIDTH} '
        f'{SPARK_HEIGHT}" role="img" aria-label="recent runs">'
    ]
    link = escape(root)
    for i, (r, length) in enumerate(zip(runs, lengths, strict=True)):
        height = max(2.0, SPARK_HEIGHT * length / longest)
        start = r.start_time.astimezone(UTC).isoformat(" ", "seconds")[:19]
        title = escape(f"#{r.job_id} {r.status or 'running'} {start} ({length:.3f} s)")
        parts.append(
            f'<a href="{link}/runs/{r.job_id}"><rect class="{status_class(r.status)}" '
            f'x="{i * SPARK_BAR}" y="{SPARK_HEIGHT - height:.1f}" width="{SPARK_BAR - 1}" '
            f'height="{height:.1f}"><title>{title}</title></rect></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Segment:
    """One step on the run's timeline: offsets in percent of the run's span."""

    step: StepRecord
    left: float
    width: float
    css: str
    offset: str
    elapsed: str
    slowest: bool
    failed: bool


def timeline(job: JobRecord, steps: list[StepRecord], now: datetime) -> list[Segment]:
    """Place each step on the run's span (start of the run to its end, or to now while it
    runs), so a failed step (red, flagged) and the slowest step (flagged) stand out."""
    ends = [s.end_time or now for s in steps]
    finish = max([job.end_time or now, *ends])
    span = max((finish - job.start_time).total_seconds(), 1e-6)
    lengths = [(end - s.start_time).total_seconds() for s, end in zip(steps, ends, strict=True)]
    slowest = max(range(len(steps)), key=lengths.__getitem__, default=None)
    segments = []
    for i, (step, length) in enumerate(zip(steps, lengths, strict=True)):
        left = 100.0 * max(0.0, (step.start_time - job.start_time).total_seconds()) / span
        width = max(0.4, 100.0 * length / span)
        css = status_class(step.status)
        segments.append(
            Segment(
                step=step,
                left=min(left, 99.6),
                width=min(width, 100.0 - min(left, 99.6)),
                css=css,
                offset="+" + format_duration(step.start_time - job.start_time),
                elapsed=format_duration(length) + ("" if step.end_time else " …"),
                slowest=len(steps) > 1 and i == slowest,
                failed=css in ("critical", "warning", "other"),
            )
        )
    return segments
