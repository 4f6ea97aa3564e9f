"""A real Airflow for end-to-end tests: api-server, scheduler and dag-processor with the
LocalExecutor, in a throwaway AIRFLOW_HOME with a metadata database of its own (SQLite in the
home, or an empty PostgreSQL database given as ``metadata_dsn``).

Under ``dag.test()`` everything runs in one process; only a real Airflow shows where each
hook really runs (task callbacks and listener task hooks in task processes, DAG callbacks in
the dag-processor, the listener's DAG-run hooks inside the scheduler) and whether the
scheduler survives them. Starting one costs ~15-25 s, so tests share one start where they can.

Usage::

    with real_airflow(E2E_DAGS, {"AIRFLOW__JOBMON__ENABLE_LISTENER": "True"},
                      setup=[["connections", "add", "jobmon_default", "--conn-json", js]]) as af:
        af.wait_parsed("my_dag")
        af.trigger("my_dag", "run_1")
        af.wait("the run to be logged", lambda: bool(jm.show_job("my_dag")))
        af.assert_alive()

A failure keeps the home (its ``*.log`` files say what went wrong); a pass removes it,
unless the environment variable ``REAL_AIRFLOW_KEEP`` is set.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg
from sqlalchemy.engine import URL

from devtools.pg import conninfo_params

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DEADLINE = 180.0
"""Seconds a whole real-Airflow test may take, start to end, unless told otherwise."""
LOOP_DEATHS = (
    "Exception when executing SchedulerJob._run_scheduler_loop",
    "Exception when executing DagProcessorJob",
)
"""What Airflow logs when a component's main loop dies (jobs/*_job_runner.py)."""
PROCESSES = (
    ("api-server", ("api-server",)),
    ("scheduler", ("scheduler",)),
    ("dag-processor", ("dag-processor",)),
)


def metadata_env(dsn: str) -> dict[str, str]:
    """The settings that make a PostgreSQL database (a libpq connection string) Airflow's
    metadata database, through psycopg 3 (asyncpg, Airflow's default async driver, is not
    installed)."""
    params = {k: str(v) for k, v in conninfo_params(dsn).items() if v is not None}
    host = params.get("host", "")
    url = URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=None if host.startswith("/") else host or None,
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
        query={"host": host} if host.startswith("/") else {},
    ).render_as_string(hide_password=False)
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url.replace("+psycopg:", "+psycopg_async:"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealAirflow:
    """A running Airflow: its home, its environment, and the processes of its components."""

    def __init__(
        self, home: Path, env: dict[str, str], deadline: float, metadata_dsn: str | None = None
    ) -> None:
        self.home = home
        self.env = env
        self.metadata_dsn = metadata_dsn
        self.deadline = deadline
        self.started = time.monotonic()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[str]] = []

    # -- commands ---------------------------------------------------------------------------

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` in this home (a CLI command: connections, dags, ...)."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def trigger(self, dag_id: str, run_id: str, conf: str | None = None) -> None:
        """Trigger a DAG run (``conf``: a JSON object, as ``airflow dags trigger -c``)."""
        self.airflow("dags", "trigger", dag_id, "-r", run_id, *(["-c", conf] if conf else []))

    def trigger_all(self, runs: Iterable[tuple[str, str]]) -> None:
        """Trigger several DAG runs ``(dag_id, run_id)`` at once: each CLI call costs a few
        seconds of Airflow import, so they run side by side."""
        procs = [
            (
                dag_id,
                subprocess.Popen(
                    [AIRFLOW, "dags", "trigger", dag_id, "-r", run_id],
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
            for dag_id, run_id in runs
        ]
        for dag_id, proc in procs:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise AssertionError(f"airflow dags trigger {dag_id} failed:\n{out}")

    # -- waiting ----------------------------------------------------------------------------

    def wait(
        self, what: str, condition: Callable[[], object], timeout: float | None = None
    ) -> None:
        """Poll ``condition`` every 0.5 s until it is true; fail if a component died or the
        test's deadline (or ``timeout`` seconds from now, if sooner) passes."""
        deadline = self.deadline
        if timeout is not None:
            deadline = min(deadline, time.monotonic() + timeout)
        while True:
            self.assert_alive(f" while waiting for {what}")
            if condition():
                self.said(f"{what}: done")
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out waiting for {what}; logs in {self.home}")
            time.sleep(0.5)

    def _select(self, query: str, params: dict[str, str]) -> list[tuple[Any, ...]]:
        """Rows of a fixed query on the metadata database (``:name`` placeholders); none
        while the table is not there yet."""
        if self.metadata_dsn is None:
            try:
                with sqlite3.connect(self.home / "airflow.db") as db:
                    return list(db.execute(query, params))
            except sqlite3.Error:
                return []
        try:
            with psycopg.connect(self.metadata_dsn, autocommit=True) as conn:
                return conn.execute(re.sub(r":(\w+)", r"%(\1)s", query), params).fetchall()
        except psycopg.Error:
            return []

    def dag_ids(self) -> set[str]:
        """The DAGs the dag-processor has written to the metadata database so far."""
        return {row[0] for row in self._select("SELECT dag_id FROM dag", {})}

    def wait_parsed(self, *dag_ids: str) -> None:
        self.wait(
            f"the DAGs {', '.join(dag_ids)} to be parsed", lambda: set(dag_ids) <= self.dag_ids()
        )

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The state of a DAG run in the metadata database (None: not there yet)."""
        rows = self._select(
            "SELECT state FROM dag_run WHERE dag_id = :dag_id AND run_id = :run_id",
            {"dag_id": dag_id, "run_id": run_id},
        )
        return str(rows[0][0]) if rows else None

    def said(self, what: str) -> None:
        """Print a step with the seconds since the start (shown by pytest on a failure, or
        with ``-s``: where a slow or stuck test spent its time)."""
        print(f"[real_airflow {time.monotonic() - self.started:6.1f} s] {what}", flush=True)

    # -- health -----------------------------------------------------------------------------

    def assert_alive(self, when: str = "") -> None:
        """Every component still runs (a dead scheduler is the bug these tests look for).
        A scheduler whose loop died may hang in its shutdown instead of exiting, so the
        message Airflow logs then counts as dead too."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                said = f"exited ({proc.returncode})"
            elif any(death in self.log(name) for death in LOOP_DEATHS):
                said = "stopped its loop"
            else:
                continue
            raise AssertionError(
                f"airflow {name} {said}{when}; its log: "
                f"{self.home / (name + '.log')}\n{self.log(name)[-4000:]}"
            )

    def log(self, name: str) -> str:
        """What a component wrote so far (``scheduler``, ``dag-processor``, ``api-server``)."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        for name, args in PROCESSES:
            log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            self.procs[name] = subprocess.Popen(
                [
                    AIRFLOW,
                    *args,
                    *(["--port", self.env["AIRFLOW__API__PORT"]] if name == "api-server" else []),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left after 20 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for log in self._logs:
            log.close()


@contextlib.contextmanager
def real_airflow(
    dags_folder: Path,
    env: Mapping[str, str] | None = None,
    *,
    setup: Sequence[Sequence[str]] = (),
    deadline: float = DEADLINE,
    metadata_dsn: str | None = None,
) -> Iterator[RealAirflow]:
    """Migrate a new home, run the ``setup`` CLI commands (e.g. ``connections add``), start
    the components, and stop them on exit.

    The metadata database is SQLite in the home, or with ``metadata_dsn`` (an empty
    PostgreSQL database, e.g. from ``devtools.pg.fresh_database``) PostgreSQL, as in
    production.

    ``env`` adds to (or overrides) the test process's environment and the defaults here:
    the LocalExecutor, DAGs unpaused at creation, a 5 s DAG folder refresh and a 1 s
    scheduler heartbeat (fast tests). ``deadline``: seconds the whole block may wait in all.
    """
    start = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="pg-jobmon-e2e-"))
    port = str(_free_port())
    full_env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        **(metadata_env(metadata_dsn) if metadata_dsn else {}),
        **(env or {}),
    }
    full_env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    af = RealAirflow(home, full_env, start + deadline, metadata_dsn)
    passed = False
    try:
        af.airflow("db", "migrate")
        for command in setup:
            af.airflow(*command)
        af.said("migrated and set up")
        af.start()
        yield af
        af.assert_alive(" at the end of the test")
        passed = True
    finally:
        af.stop()
        af.said("stopped")
        if passed and not os.environ.get("REAL_AIRFLOW_KEEP"):  # a failure keeps the home
            shutil.rmtree(home, ignore_errors=True)
