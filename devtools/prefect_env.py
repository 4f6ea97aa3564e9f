"""A throwaway Prefect for the demo and the benchmarks: its own ``PREFECT_HOME`` in a
temporary directory (deleted at exit: a newer Prefect's database breaks an older one, and the
user's own home is never touched), and a temporary Prefect API server started and stopped
around the work, on SQLite in that home.

Call :func:`prepare` before anything imports Prefect: Prefect reads its settings at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

STARTUP_TIMEOUT = 90
"""Seconds the temporary server may take to start (its database migrations take ~13-18 s
on a 2-core machine; Prefect's own default, 20 s, is too close)."""


def prepare(*, log_level: str = "WARNING") -> str:
    """Point Prefect at a temporary home of its own; return it."""
    if "prefect" in sys.modules:
        raise RuntimeError("devtools.prefect_env.prepare() must run before Prefect is imported")
    home = tempfile.mkdtemp(prefix="pg-jobmon-prefect-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["PREFECT_HOME"] = home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(STARTUP_TIMEOUT)
    os.environ["PREFECT_LOGGING_LEVEL"] = log_level
    os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
    return home


@contextmanager
def temporary_server() -> Iterator[str]:
    """A Prefect API server for the block (its URL), stopped after; flow runs skip the
    heartbeat thread, which costs every run ~1 s at its end."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    server = SubprocessASGIServer()
    server.start(timeout=STARTUP_TIMEOUT)
    try:
        with temporary_settings(
            {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        ):
            yield server.api_url
    finally:
        server.stop()
