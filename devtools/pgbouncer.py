"""A PgBouncer in front of a test server, for tests and demos, with nothing left behind.

:func:`bouncer` starts the system's ``pgbouncer`` binary on a free local port, in a temporary
directory (configuration, log, Unix socket), in front of a running server such as the one
:func:`devtools.pg.server` gives: the embedded one (a Unix socket, trust) or the system
PostgreSQL 15 (TCP, a password role). Clients need no password: PgBouncer accepts anyone
(``auth_type = any``) and logs in to the server as the server connection string's user, with
its password. On exit PgBouncer is stopped and the directory removed.

PgBouncer is a system package, not a Python one: ``apt-get install pgbouncer`` (Debian and
Ubuntu; ``.ci/run`` installs it), ``brew install pgbouncer``, ``dnf install pgbouncer``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from .pg import conninfo_params

INSTALL_HINT = (
    "pgbouncer is not installed (or not on PATH, /usr/sbin, /usr/local/sbin): install it with "
    "`apt-get install -y pgbouncer` (Debian/Ubuntu; .ci/run does this), `brew install "
    "pgbouncer` or `dnf install pgbouncer`. The PgBouncer tests need a real one."
)
_SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin")
# PgBouncer refuses to run as root
_RUN_AS = ("postgres", "pgbouncer", "embedded_postgres", "nobody")


class PgBouncerMissing(RuntimeError):
    """No pgbouncer binary on this machine."""


def find_binary() -> str:
    """The pgbouncer executable, or :class:`PgBouncerMissing` saying how to install it."""
    found = shutil.which("pgbouncer") or shutil.which(
        "pgbouncer", path=os.pathsep.join(_SEARCH_PATH)
    )
    if found is None:
        raise PgBouncerMissing(INSTALL_HINT)
    return found


def version(binary: str | None = None) -> tuple[int, ...]:
    """The version of the pgbouncer binary, e.g. ``(1, 18, 0)``."""
    out = subprocess.run(
        [binary or find_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"PgBouncer (\d+(?:\.\d+)*)", out)
    if match is None:
        raise RuntimeError(f"cannot read the pgbouncer version from {out!r}")
    return tuple(int(part) for part in match[1].split("."))


@dataclass
class Bouncer:
    """A running PgBouncer: client connection strings, its version and its log."""

    host: str
    port: int
    user: str
    version: tuple[int, ...]
    pool_mode: str
    pool_size: int
    logfile: Path

    def dsn_for(self, dbname: str, **extra: str) -> str:
        """A client connection string for ``dbname`` through PgBouncer (no password needed)."""
        params = {
            "host": self.host,
            "port": str(self.port),
            "dbname": dbname,
            "user": self.user,
            "sslmode": "disable",
            **extra,
        }
        return make_conninfo("", **params)

    def dsn_like(self, server_dsn: str, **extra: str) -> str:
        """The connection string ``server_dsn`` would become through PgBouncer (same database)."""
        return self.dsn_for(conninfo_params(server_dsn).get("dbname") or "postgres", **extra)

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quote(value: str) -> str:
    """A value for PgBouncer's ``[databases]`` connection strings."""
    return "'" + value.replace("'", "''") + "'"


def _run_as(host: str) -> pwd.struct_passwd | None:
    """Whom pgbouncer runs as when we are root: the owner of the server's socket directory
    (the only user sure to reach it), else a system user."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        with contextlib.suppress(OSError, KeyError):
            owner = pwd.getpwuid(os.stat(host).st_uid)
            if owner.pw_uid != 0:
                return owner
    for name in _RUN_AS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"running as root, and none of the users {_RUN_AS} exists to run pgbouncer")


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, logfile: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = logfile.read_text(errors="replace") if logfile.exists() else ""
            raise RuntimeError(f"pgbouncer exited at start (code {proc.returncode}):\n{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on port {port} within 15 s")


@contextlib.contextmanager
def bouncer(
    server_dsn: str,
    *,
    pool_mode: str = "transaction",
    pool_size: int = 2,
    ignore_startup_parameters: Sequence[str] = (),
    extra_settings: dict[str, str] | None = None,
) -> Iterator[Bouncer]:
    """Run PgBouncer in front of the server of ``server_dsn``; stop and remove it after.

    Every database of the server is reachable (a ``*`` entry), with at most ``pool_size``
    server connections per database, in ``pool_mode`` (``transaction`` by default: the mode
    that breaks prepared statements and session state).
    """
    binary = find_binary()
    server = conninfo_params(server_dsn)
    user = server.get("user") or pwd.getpwuid(os.getuid()).pw_name
    target = {"host": server.get("host") or "/var/run/postgresql", "user": user}
    if server.get("port"):
        target["port"] = server["port"]
    if server.get("password"):
        target["password"] = server["password"]
    run_as = _run_as(target["host"])
    workdir = Path(tempfile.mkdtemp(prefix="pg-jobmon-pgbouncer-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = _free_port()
        logfile = workdir / "pgbouncer.log"
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(port),
            "unix_socket_dir": str(workdir),
            "auth_type": "any",
            "pool_mode": pool_mode,
            "default_pool_size": str(pool_size),
            "max_client_conn": "500",
            "logfile": str(logfile),
            "pidfile": str(workdir / "pgbouncer.pid"),
            "ignore_startup_parameters": ",".join(ignore_startup_parameters),
            "server_login_retry": "1",
            **(extra_settings or {}),
        }
        connstr = " ".join(f"{k}={_quote(v)}" for k, v in target.items())
        config = workdir / "pgbouncer.ini"
        config.write_text(
            f"[databases]\n* = {connstr}\n\n[pgbouncer]\n"
            + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        config.chmod(0o600)
        if run_as is not None:
            for path in (workdir, config):
                os.chown(path, run_as.pw_uid, run_as.pw_gid)
        command = [binary, "-q", str(config)]
        if run_as is not None:
            command[1:1] = ["-u", run_as.pw_name]
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _wait_until_listening(proc, port, logfile)
        yield Bouncer(
            host="127.0.0.1",
            port=port,
            user=user,
            version=version(binary),
            pool_mode=pool_mode,
            pool_size=pool_size,
            logfile=logfile,
        )
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # immediate shutdown
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)
