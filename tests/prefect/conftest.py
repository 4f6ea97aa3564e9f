"""Real Prefect for the integration tests: one temporary Prefect API server for the whole
session (``prefect_test_harness``, SQLite in a throwaway ``PREFECT_HOME``), real flow runs
against it, and the hooks logging into this test's jobmon schema through ``JOBMON_DSN`` /
``JOBMON_SCHEMA``. The environment is set here, before anything imports Prefect."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

assert "prefect" not in sys.modules, "Prefect was imported before its test settings were made"
_home = tempfile.mkdtemp(prefix="pg-jobmon-prefect-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ["PREFECT_HOME"] = _home  # never the user's: a newer Prefect's DB breaks older ones
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"  # less traffic to the test server
os.environ.pop("JOBMON_PREFECT_BLOCK", None)

from jobmon_core import Jobmon  # noqa: E402
from jobmon_prefect.destination import close_all  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    """The session's Prefect API (its URL, for processes of the tests' own)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    # a flow run joins its heartbeat thread at the end (~1 s per run) unless it has none
    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        url = PREFECT_API_URL.value()
        assert url
        yield str(url)


@pytest.fixture
def logged(jm: Jobmon, dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobmon]:
    """The hooks log into this test's schema (``jm``); their sessions end with the test."""
    monkeypatch.setenv("JOBMON_DSN", dsn)
    monkeypatch.setenv("JOBMON_SCHEMA", jm.schema)
    yield jm
    close_all()
