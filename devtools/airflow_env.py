"""A throwaway Airflow for the demo: home, settings and the jobmon connection.

Airflow reads its settings when it is first imported, so :func:`prepare` must run before
anything imports ``airflow``.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from .pg import conninfo_params


def prepare(dags_folder: Path) -> Path:
    """Point Airflow at a new temporary home and ``dags_folder``; quiet, no examples.
    The home is removed when the process exits."""
    home = Path(tempfile.mkdtemp(prefix="pg-jobmon-airflow-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    return home


def jobmon_connection(dsn: str, schema: str = "jobmon", conn_type: str = "jobmon") -> str:
    """An Airflow connection (JSON form) to the database of ``dsn``."""
    params = conninfo_params(dsn)
    return json.dumps(
        {
            "conn_type": conn_type,
            "host": params.get("host"),
            "port": int(params["port"]) if params.get("port") else None,
            "login": params.get("user"),
            "password": params.get("password"),
            "schema": params.get("dbname"),
            "extra": {"jobmon_schema": schema, "connect_timeout": 3},
        }
    )


def migrate() -> None:
    """Create the Airflow metadata database (SQLite in the home)."""
    from airflow.utils import db

    db.initdb()


def load_dag_file(path: Path) -> ModuleType:
    """Import a DAG file by path (the same file the DAG bundle parses)."""
    spec = importlib.util.spec_from_file_location(f"pg_jobmon_dags.{path.stem}", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
