"""jobmon_prefect imports where Airflow cannot be imported (the two extras conflict), and
Prefect finds it through pg-jobmon's ``prefect.collections`` entry point."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from ..test_no_airflow import BLOCK_AIRFLOW


def test_jobmon_prefect_needs_no_airflow():
    code = BLOCK_AIRFLOW + (
        "import jobmon_prefect, jobmon_prefect.follower, jobmon_prefect.tasks\n"
        "assert not any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules)\n"
        "assert not any(m.startswith('jobmon_airflow') for m in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_block_is_registered_as_a_prefect_collection():
    (entry,) = [e for e in entry_points(group="prefect.collections") if e.name == "pg_jobmon"]
    assert entry.value == "jobmon_prefect"
