"""jobmon_core must work where Airflow is not installed: a child process in which any
`import airflow` fails imports the core and runs the CLI."""

from __future__ import annotations

import subprocess
import sys

BLOCK_AIRFLOW = """
import importlib.abc, sys
class NoAirflow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoAirflow())
"""


def test_the_core_and_its_cli_need_no_airflow(dsn, jm):
    code = (
        BLOCK_AIRFLOW
        + f"""
import jobmon_core, jobmon_core.cli, jobmon_core.plugins, jobmon_core.aio
from jobmon_core import Jobmon
jm = Jobmon({dsn!r}, schema={jm.schema!r})
jm.close_job(jm.add_job("no airflow here"))
assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules)
sys.exit(jobmon_core.cli.main(["--dsn", {dsn!r}, "--schema", {jm.schema!r}, "check"]))
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("JOBMON OK")
    assert jm.show_job("no airflow here")
