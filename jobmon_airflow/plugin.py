"""The Airflow plugin (entry point ``airflow.plugins``) that carries the opt-in listener.

When ``[jobmon] enable_listener`` is off (the default) it registers nothing: a no-op.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from . import listeners


class JobmonListenerPlugin(AirflowPlugin):
    name = "pg_jobmon_listener"
    listeners = [listeners] if listeners.enabled() else []
