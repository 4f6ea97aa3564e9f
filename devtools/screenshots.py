"""Screenshots of the page's views for the README, and the headless browser the page's tests
drive: Debian's ``chromium`` (``devtools/ensure-chromium`` installs it), through its own
``--dump-dom`` and ``--screenshot`` switches, with no Python driver.

``python -m devtools.screenshots`` starts a throwaway PostgreSQL (or uses
``JOBMON_DEMO_DSN``, a superuser connection string), logs a few jobs (a nightly load that
fails at a step, a slow export, a job still running), serves them with ``jobmon web`` and
writes ``docs/screenshots/{health,jobs,run}.png``; then starts a real Airflow (api-server,
scheduler, dag-processor; the tests' harness) whose jobmon connection reads the same log and
writes ``docs/screenshots/airflow.png``: the page inside Airflow's UI, under its Jobmon
entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
JOBMON = str(Path(sys.executable).with_name("jobmon"))


def chromium() -> str:
    """The headless browser's path; a clear error (never a skip) when there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "chromium is not installed: run devtools/ensure-chromium (as root: apt-get install "
        "chromium); the page's browser tests and screenshots need it"
    )


def _browse(*switches: str, url: str, timeout: float = 60) -> str:
    """Run headless chromium on ``url`` once, in a profile of its own (removed after)."""
    with tempfile.TemporaryDirectory(prefix="pg-jobmon-chromium-") as profile:
        done = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",  # as root (CI, containers) chromium refuses its sandbox
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *switches,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed on {url} ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str, *, wait_ms: int = 0) -> str:
    """The DOM chromium built for ``url`` (after ``wait_ms`` of virtual time: scripts)."""
    waiting = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    return _browse("--dump-dom", *waiting, url=url)


def screenshot(url: str, path: Path, size: tuple[int, int] = (1280, 720), wait_ms: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    waiting = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    _browse(f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", *waiting, url=url)
    if not path.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until ``url`` answers (any HTTP status), failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


@contextlib.contextmanager
def jobmon_web(
    dsn: str, schema: str, role: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``jobmon web`` on a free loopback port in a process of its own; yields its URL. Its
    output goes to a file (a pipe nobody reads could fill and stall it), shown if it fails."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(
            [JOBMON, "web", "--dsn", dsn, "--schema", schema, "--role", role, "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for_http(url + "/jobs", proc)
            except RuntimeError as exc:
                output.seek(0)
                raise RuntimeError(
                    f"jobmon web: {exc}; it said:\n{output.read()[-3000:]}"
                ) from None
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


FAILURE = 'ForeignKeyViolation: key (customer_id)=(42) is not present in table "customers"'


def log_demo_jobs(dsn: str, schema: str) -> int:
    """A few jobs worth looking at; returns the failed run's job_id."""
    from jobmon_core import Jobmon

    with Jobmon(dsn, schema=schema) as jm:
        jm.install()
        jm.configure_check("nightly load", warn=timedelta(hours=25), error=timedelta(hours=49))
        jm.configure_check("export orders", warn=timedelta(hours=25), error=timedelta(hours=49))
        for night in range(6):
            job = jm.add_job("nightly load")
            for action, message in (
                ("copy staging rows", "120000 rows"),
                ("load facts", "118000 rows"),
                ("analyze facts", None),
            ):
                step = jm.add_step(job, action)
                time.sleep(0.02 * (1 + night % 3))
                jm.update_step(step, "OK", message)
            jm.close_job(job)
        for _ in range(3):
            job = jm.add_job("export orders")
            step = jm.add_step(job, "write orders.csv")
            time.sleep(0.05)
            jm.update_step(step, "OK", "5000 rows")
            jm.close_job(job)
        failed = jm.add_job("nightly load")
        for action, status, message, pause in (
            ("copy staging rows", "OK", "121500 rows", 0.03),
            ("load facts", "OK", "119900 rows", 0.25),
            ("check constraints", "CRITICAL", FAILURE, 0.02),
        ):
            step = jm.add_step(failed, action)
            time.sleep(pause)
            jm.update_step(step, status, message)
        jm.fail_job(failed)
        running = jm.add_job("refresh dashboards")
        jm.update_step(jm.add_step(running, "refresh sales_daily"), "OK", "done")
        jm.add_step(running, "refresh churn")
        return failed


def airflow_screenshot(dsn: str, schema: str, role: str) -> Path:
    """The page as Airflow's UI shows it (all-admins auth: no login form to fill in)."""
    from devtools.airflow_env import jobmon_connection
    from tests.airflow.real_airflow import real_airflow

    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW_CONN_JOBMON_DEFAULT": jobmon_connection(dsn, schema),
        "AIRFLOW__JOBMON__WEB_ROLE": role,
    }
    with (
        tempfile.TemporaryDirectory(prefix="pg-jobmon-dags-") as dags,
        real_airflow(Path(dags), env) as af,
    ):
        base = f"http://127.0.0.1:{af.env['AIRFLOW__API__PORT']}"
        af.wait("the api-server", lambda: _answers(f"{base}/api/v2/monitor/health"))
        return screenshot(
            f"{base}/auth/token/login?next=/plugin/jobmon",
            SCREENSHOTS / "airflow.png",
            (1280, 560),
            wait_ms=20000,  # Airflow's UI is a React app: let it build the page
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    from devtools import pg

    schema, role = "jobmon", "jobmon_monitor"
    with pg.server("JOBMON_DEMO_DSN") as srv, pg.fresh_database(srv) as dsn:
        failed = log_demo_jobs(dsn, schema)
        from jobmon_core import Jobmon

        with Jobmon(dsn, schema=schema) as jm:
            created = jm.create_roles(writer=None, monitor=role, admin=None)
        try:
            with jobmon_web(dsn, schema, role) as url:
                for name, path, height in (
                    ("health", "/", 560),
                    ("jobs", "/jobs", 640),
                    ("run", f"/runs/{failed}", 520),
                ):
                    shot = screenshot(url + path, SCREENSHOTS / f"{name}.png", (1280, height))
                    print(f"wrote {shot.relative_to(ROOT)}")
            shot = airflow_screenshot(dsn, schema, role)
            print(f"wrote {shot.relative_to(ROOT)}")
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
                if created:  # a role that was there before stays
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


if __name__ == "__main__":
    main()
