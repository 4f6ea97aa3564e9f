"""What a check reports: one :class:`Alert` per problem, as pg_jobmon's check_job_status rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

OK, WARNING, CRITICAL = 1, 2, 3
NAGIOS_EXIT = {OK: 0, WARNING: 1, CRITICAL: 2}
UNKNOWN_EXIT = 3


@dataclass(frozen=True)
class Alert:
    """One row of ``check_job_status``: ``alert_code`` 1 OK, 2 WARNING, 3 CRITICAL, or a
    custom code above 3; ``alert_status`` FAILED_RUN, MISSING, RUNNING, BLOCKED or OK, and
    pg-jobmon's RUNNING_TOO_LONG / RAN_TOO_LONG for jobs with duration limits."""

    alert_code: int
    alert_status: str | None
    job_name: str | None
    alert_text: str

    @property
    def is_ok(self) -> bool:
        return self.alert_code <= OK

    @property
    def nagios_exit_code(self) -> int:
        """0 OK, 1 WARNING, 2 CRITICAL; custom codes above 3 count as CRITICAL."""
        return NAGIOS_EXIT.get(self.alert_code, NAGIOS_EXIT[CRITICAL])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(alerts: list[Alert]) -> int:
    """The highest alert code of a check (1 when there are none)."""
    return max((a.alert_code for a in alerts), default=OK)
