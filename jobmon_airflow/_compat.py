"""Airflow names that moved between the versions we support (3.1 to 3.x).

Airflow 3.2 moved the task exceptions into the Task SDK (``airflow.sdk.exceptions``) and
deprecated their old home; Airflow 3.1 (Task SDK 1.1) has them only in ``airflow.exceptions``.
Importing them from here keeps every module importable on the lowest version we declare,
without the deprecation warning on the newest. ``.ci/airflow-lowest`` proves it.
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
        TaskDeferred,
    )

from airflow.exceptions import AirflowProviderDeprecationWarning

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowProviderDeprecationWarning",
    "AirflowSkipException",
    "TaskDeferred",
]
