"""The check's result in the Monitoring Plugins format (Nagios, Icinga, Naemon, Sensu).

    JOBMON CRITICAL - 2 problems: NIGHTLY LOAD: 1 CRITICAL run(s); BACKUP: Last completed ...
    CRITICAL  NIGHTLY LOAD  FAILED_RUN  1 CRITICAL run(s)
    WARNING   BACKUP        MISSING     Last completed run: 2026-11-24 23:06:06+00
    | 'critical'=1;;;0 'warning'=1;;;0 'problems'=2;;;0 'time'=0.004s;;;0

First line: service name, state, a human summary. Perfdata after ``|`` (on the last line, as
the guidelines allow with long output). Exit code: 0 OK, 1 WARNING, 2 CRITICAL (custom codes
above 3 included), 3 UNKNOWN when the check could not run at all.
"""

from __future__ import annotations

from .alerts import CRITICAL, OK, UNKNOWN_EXIT, WARNING, Alert, worst
from .text import printable

SERVICE = "JOBMON"
STATE_NAMES = {0: "OK", 1: "WARNING", 2: "CRITICAL", UNKNOWN_EXIT: "UNKNOWN"}


def _plain(value: str | None) -> str:
    """A job name or text as plugin output: one line, and no ``|``, which starts perfdata
    (a job named ``A|B`` would otherwise turn the rest of the line into bad perfdata)."""
    return printable(value or "").replace("|", "\N{BROKEN BAR}")


def exit_code(alerts: list[Alert]) -> int:
    return max((a.nagios_exit_code for a in alerts), default=0)


def level_name(code: int) -> str:
    if code <= OK:
        return "OK"
    if code == WARNING:
        return "WARNING"
    if code == CRITICAL:
        return "CRITICAL"
    return f"CRITICAL({code})"


def perfdata(alerts: list[Alert], seconds: float) -> str:
    problems = [a for a in alerts if not a.is_ok]
    critical = sum(1 for a in problems if a.alert_code >= CRITICAL)
    warning = sum(1 for a in problems if a.alert_code == WARNING)
    return (
        f"'critical'={critical};;;0 'warning'={warning};;;0 "
        f"'problems'={len(problems)};;;0 'time'={seconds:.4f}s;;;0"
    )


def render(alerts: list[Alert], seconds: float) -> tuple[str, int]:
    """The plugin output and its exit code."""
    code = exit_code(alerts)
    state = STATE_NAMES[code]
    problems = [a for a in alerts if not a.is_ok]
    if not problems:
        text = _plain(next((a.alert_text for a in alerts), "All jobs run successfully"))
        return f"{SERVICE} {state} - {text} | {perfdata(alerts, seconds)}", code
    noun = "problem" if len(problems) == 1 else "problems"
    summary = "; ".join(f"{_plain(a.job_name)}: {_plain(a.alert_text)}" for a in problems)
    lines = [f"{SERVICE} {state} - {len(problems)} {noun}: {summary}"]
    width = max(len(_plain(a.job_name)) for a in problems)
    status_width = max(len(_plain(a.alert_status)) for a in problems)
    for a in problems:
        lines.append(
            f"{level_name(a.alert_code):<12} {_plain(a.job_name):<{width}}  "
            f"{_plain(a.alert_status):<{status_width}}  {_plain(a.alert_text)}"
        )
    lines[-1] += f" | {perfdata(alerts, seconds)}"
    return "\n".join(lines), code


def unknown(reason: str) -> tuple[str, int]:
    """The output when the check itself could not run: never OK, never a traceback."""
    first_line = _plain(" ".join(reason.split()))
    return f"{SERVICE} UNKNOWN - {first_line}", UNKNOWN_EXIT


__all__ = ["exit_code", "render", "unknown", "worst"]
