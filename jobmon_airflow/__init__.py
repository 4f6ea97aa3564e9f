"""pg-jobmon's Airflow 3 provider: a thin skin over :mod:`jobmon_core`.

It turns Airflow things (connections, context, exceptions) into core calls and back; all
monitoring logic lives in the core and in the database.
"""

from jobmon_core import __version__

__all__ = ["__version__"]
