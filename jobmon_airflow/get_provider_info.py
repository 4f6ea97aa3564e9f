"""Provider registration (entry point ``apache_airflow_provider``).

``package-name`` must equal the distribution name or Airflow refuses the provider. The
connection type's UI is declared here (``ui-field-behaviour``, ``conn-fields``), which is what
Airflow 3.2+ reads.
"""

from __future__ import annotations

from typing import Any

from jobmon_core import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "pg-jobmon",
        "name": "pg-jobmon",
        "description": "Job logging and Nagios-style job monitoring in PostgreSQL "
        "(pg_jobmon compatible): log DAG runs as jobs, check them, alert on failures.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "jobmon",
                "hook-class-name": "jobmon_airflow.hooks.jobmon.JobmonHook",
                "hook-name": "pg-jobmon (PostgreSQL job log)",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"schema": "Database"},
                    "placeholders": {
                        "host": "db.example.com or a Unix socket directory",
                        "port": "5432",
                        "schema": "the database holding the jobmon schema",
                    },
                },
                "conn-fields": {
                    "jobmon_schema": {
                        "label": "Jobmon schema",
                        "schema": {"type": ["string", "null"], "default": "jobmon"},
                    },
                    "application_name": {
                        "label": "Application name",
                        "schema": {"type": ["string", "null"], "default": "airflow-jobmon"},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "schema": {"type": ["integer", "null"], "default": 5},
                    },
                },
            }
        ],
    }
