"""Real Airflow for the provider tests: a throwaway AIRFLOW_HOME, a migrated SQLite metadata
DB (once per run), our own DAG folder, and the jobmon connection pointing at the test
database. The environment is set here, before anything imports Airflow."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from devtools.airflow_env import jobmon_connection

TEST_DAGS = Path(__file__).parent / "dags"
EXAMPLES = Path(__file__).parent.parent.parent / "dags_examples"
_home = tempfile.mkdtemp(prefix="pg-jobmon-airflow-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
# The DAG bundle: the test DAGs and the examples, linked into one folder of the run's own.
DAGS = Path(_home) / "dags"
DAGS.mkdir()
for _source in [*TEST_DAGS.iterdir(), *EXAMPLES.glob("*.py")]:
    if _source.suffix in (".py", ".sql"):
        (DAGS / _source.name).symlink_to(_source)
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    from airflow.utils import db

    db.initdb()
    yield
    shutil.rmtree(_home, ignore_errors=True)


@pytest.fixture
def jobmon_conn(dsn, jm, monkeypatch, airflow_db) -> str:
    """``jobmon_default`` points at this test's jobmon schema."""
    monkeypatch.setenv("AIRFLOW_CONN_JOBMON_DEFAULT", jobmon_connection(dsn, jm.schema))
    return "jobmon_default"


def load_dag_module(name: str) -> ModuleType:
    """Import a DAG file of tests/airflow/dags (the same file the bundle parser reads)."""
    spec = importlib.util.spec_from_file_location(f"jobmon_test_dags.{name}", DAGS / f"{name}.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
