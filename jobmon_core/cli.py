"""The ``jobmon`` command: install, check (a Nagios/Icinga plugin), reports, config, retention.

Errors are one clear line on stderr and a non-zero exit, never a traceback and never the
password. ``jobmon check`` follows the Monitoring Plugins rules: exit 0/1/2 for OK, WARNING,
CRITICAL and 3 (UNKNOWN) whenever it could not check, bad arguments included.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from . import __version__, nagios, roles
from .alerts import UNKNOWN_EXIT, Alert, worst
from .checker import CheckConfig
from .durations import format_duration, parse_duration
from .errors import InvalidArgumentError, JobmonError, NotFoundError
from .jobmon import Jobmon
from .notifiers.webhook import ENV_VAR, WebhookNotifier
from .plugins import new_plugin_manager
from .reports import JobRecord
from .session import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from .text import printable, table

EXAMPLES = """\
examples:
  jobmon install                                  create or upgrade the schema
  jobmon install --create-roles                   ... and the writer, monitor, admin roles
  jobmon install --print-grants | psql            the roles' SQL, for a DBA to run
  jobmon check                                    Nagios/Icinga check (exit 0/1/2/3)
  jobmon check --history 3d --format json         the alerts as JSON
  jobmon check --notify --webhook-url URL         POST to URL when a job's level changes
  jobmon jobs --name 'nightly load' --limit 5     the newest runs of a job
  jobmon jobs --running                           runs in progress
  jobmon steps 42                                 the steps of run 42
  jobmon config set 'nightly load' --warn 25h --error 49h
  jobmon clear --older-than 30d                   delete old runs, in batches
  jobmon web --port 8470                          the page and /metrics (web extra)
  jobmon metrics > jobmon.prom                    Prometheus text, for node_exporter

The database comes from --dsn, else JOBMON_DSN, else the libpq variables (PGHOST, ...).
The global options (--dsn, --schema, the time-outs, --no-prepare) go before or after the
command. --notify keeps the levels it last sent in the schema (job_alert_state), shared
by every checker.
"""


class UsageError(Exception):
    """Bad command-line arguments (argparse would exit 2, which a Nagios check must not)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except JobmonError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


MAX_TIMEOUT = 86_400  # signal.alarm() takes a C unsigned int; a day is plenty for a check


def _timeout(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TIMEOUT} seconds, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    digits = text.lstrip("-")
    value = int(text) if digits.isascii() and digits.isdigit() else -1  # int("²") fails
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of 0 or more, not {text!r}")
    return value


def _seconds(text: str) -> float:
    """A time-out: a number of seconds (``0.5``, ``5``) or a duration (``90s``, ``2m``)."""
    try:
        value = float(text)
    except ValueError:
        try:
            return parse_duration(text).total_seconds()
        except JobmonError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text!r}")
    return value


def _session_args(args: argparse.Namespace) -> dict[str, Any]:
    """The global options that shape the logging session, as Jobmon() arguments."""
    return {
        "lock_timeout": args.lock_timeout,
        "statement_timeout": args.statement_timeout,
        "prepare": args.prepare,
    }


_VALUE_OPTIONS = ("--dsn", "--schema", "--lock-timeout", "--statement-timeout")
"""The global options that take a value (to find the command in argv before parsing)."""


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, before or after its name (``jobmon check --dsn
    ...`` as well as ``jobmon --dsn ... check``). On the subcommands their default is
    ``SUPPRESS``, so a value given before the command is not overwritten by a default."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--dsn",
        default=default(None),
        help="libpq connection string (default: $JOBMON_DSN, libpq env)",
    )
    parser.add_argument(
        "--schema", default=default("jobmon"), help="the jobmon schema (default: jobmon)"
    )
    parser.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=default(DEFAULT_LOCK_TIMEOUT),
        metavar="SECONDS",
        help=f"give up waiting for a lock after this long (default {DEFAULT_LOCK_TIMEOUT:g}; "
        "0: the server's setting)",
    )
    parser.add_argument(
        "--statement-timeout",
        type=_seconds,
        default=default(DEFAULT_STATEMENT_TIMEOUT),
        metavar="SECONDS",
        help=f"cancel any statement running this long (default {DEFAULT_STATEMENT_TIMEOUT:g}; "
        "0: the server's setting)",
    )
    prepare = parser.add_mutually_exclusive_group()
    prepare.add_argument(
        "--no-prepare",
        dest="prepare",
        action="store_const",
        const=False,
        default=default(None),
        help="no prepared statements (PgBouncer before 1.21 in transaction mode; a pooler is "
        "also detected by itself)",
    )
    prepare.add_argument(
        "--prepare",
        dest="prepare",
        action="store_const",
        const=True,
        default=default(None),
        help="prepared statements even behind a pooler (PgBouncer 1.21+ with "
        "max_prepared_statements)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jobmon",
        description="pg-jobmon: job logging and Nagios-style job monitoring for PostgreSQL.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, suppress=False)
    parser.add_argument("-V", "--version", action="version", version=f"pg-jobmon {__version__}")
    common = _Parser(add_help=False)
    _add_global_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    install = commands.add_parser(
        "install",
        parents=[common],
        help="create or upgrade the jobmon schema (and, on request, its roles)",
        description="Create or upgrade the jobmon schema. With --create-roles, also create "
        "the least-privilege roles (NOLOGIN; existing ones are reused) and grant them their "
        "privileges: re-run it after every upgrade. --print-grants prints that SQL instead, "
        "for a DBA to pipe into psql, and touches nothing.",
    )
    mode = install.add_mutually_exclusive_group()
    mode.add_argument("--create-roles", action="store_true", help="also create and grant the roles")
    mode.add_argument(
        "--print-grants", action="store_true", help="print the roles' SQL; change nothing"
    )
    for kind, default, does in (
        ("writer", roles.DEFAULT_WRITER, "logs jobs"),
        ("monitor", roles.DEFAULT_MONITOR, "reads and checks"),
        ("admin", roles.DEFAULT_ADMIN, "configures and purges"),
    ):
        install.add_argument(
            f"--{kind}-role",
            metavar="ROLE",
            help=f"the role that {does} (default {default}; '' leaves it out)",
        )
    install.add_argument(
        "--read-all-stats",
        action="store_true",
        help="grant pg_read_all_stats to the monitor and admin roles (superuser only): they "
        "then see other roles' sessions, so RUNNING/BLOCKED and running jobs are exact",
    )
    install.add_argument(
        "--signal-backends",
        action="store_true",
        help="grant pg_signal_backend to the admin role (superuser only), so cancel_job can "
        "cancel other roles' sessions",
    )

    check = commands.add_parser(
        "check",
        parents=[common],
        help="run check_job_status as a Nagios/Icinga plugin",
        description="Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (could not check).",
    )
    check.add_argument("--history", type=_duration, help="window to look back (e.g. 3d)")
    check.add_argument("--format", choices=["nagios", "json"], default="nagios")
    check.add_argument(
        "-t", "--timeout", type=_timeout, default=10, help="give up after N s (default 10)"
    )
    check.add_argument(
        "--notify",
        action="store_true",
        help="tell the notifier plugins (the webhook, pg_jobmon entry points) about jobs whose "
        "alert level changed since the last --notify run",
    )
    check.add_argument(
        "--webhook-url", default=os.environ.get(ENV_VAR), help=f"with --notify (default ${ENV_VAR})"
    )
    check.add_argument(
        "--state-file",
        type=Path,
        help="with --notify: keep the last levels in this file instead of the schema's "
        "job_alert_state table, which every checker shares (for a read-only standby, or a "
        "role without the version 7 monitor grants)",
    )

    jobs = commands.add_parser("jobs", parents=[common], help="list runs, newest first")
    which = jobs.add_mutually_exclusive_group()
    which.add_argument("--name", help="runs of this job")
    which.add_argument("--like", metavar="REGEX", help="runs of jobs matching (case-insensitive)")
    which.add_argument("--running", action="store_true", help="runs in progress")
    jobs.add_argument("--status", help="only runs with this status text (e.g. CRITICAL)")
    jobs.add_argument("--limit", type=_positive_int, default=10)

    steps = commands.add_parser(
        "steps", parents=[common], help="the steps of a run (JOB_ID) or of a job (NAME)"
    )
    steps.add_argument("job", metavar="JOB_ID|NAME")
    steps.add_argument("--jobs", type=_positive_int, default=1, help="newest N runs of NAME")

    config = commands.add_parser(
        "config", parents=[common], help="monitoring configuration (job_check_config)"
    )
    config_commands = config.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    config_commands.required = True
    set_ = config_commands.add_parser(
        "set", parents=[common], help="create or replace a job's monitoring"
    )
    set_.add_argument("name")
    set_.add_argument("--warn", type=_duration, required=True, help="MISSING (warning) after")
    set_.add_argument("--error", type=_duration, required=True, help="MISSING (critical) after")
    set_.add_argument("--sensitivity", type=_non_negative_int, default=0)
    set_.add_argument("--escalate", type=_positive_int)
    set_.add_argument("--inactive", action="store_true", help="mute: never alert on this job")
    set_.add_argument(
        "--warn-duration", type=_duration, help="a run longer than this is a WARNING (e.g. 2h)"
    )
    set_.add_argument(
        "--error-duration", type=_duration, help="a run longer than this is CRITICAL (e.g. 4h)"
    )
    set_.add_argument(
        "--duration-factor",
        type=float,
        metavar="FACTOR",
        help="slower than usual: a run longer than FACTOR x its usual duration is a WARNING",
    )
    set_.add_argument(
        "--duration-percentile",
        type=float,
        metavar="FRACTION",
        help="the usual duration: this percentile of recent runs (default 0.5, the median)",
    )
    set_.add_argument(
        "--duration-runs",
        type=_positive_int,
        metavar="N",
        help="the usual duration: of the successful runs among the last N (default 20)",
    )
    config_commands.add_parser("list", parents=[common], help="show every configured job")
    remove = config_commands.add_parser(
        "remove", parents=[common], help="stop monitoring a job specially"
    )
    remove.add_argument("name")

    clear = commands.add_parser(
        "clear", parents=[common], help="delete runs older than a duration (job_log_clear)"
    )
    clear.add_argument("--older-than", type=_duration, required=True, metavar="DURATION")
    clear.add_argument("--batch-size", type=_positive_int, default=10_000)

    sql_access = commands.add_parser(
        "sql-access",
        parents=[common],
        help="let a login role log from SQL (add_job() ... in PL/pgSQL)",
        description="Give ROLE a user mapping on the SQL interface's loopback server (it logs "
        "in as itself) and USAGE on that server. A role that is not a superuser needs its "
        "password there: dblink requires password authentication for such roles. The "
        "password is read from the environment variable named by --password-env, else asked "
        "for on a terminal; it is never an argument (argument lists are visible to all).",
    )
    sql_access.add_argument("role", metavar="ROLE")
    sql_access.add_argument(
        "--password-env",
        metavar="VAR",
        help="read ROLE's password from this environment variable",
    )

    _add_web_commands(commands, common)
    commands.add_parser("version", parents=[common], help="print the version")
    return parser


# -- web and metrics (the web extra) ------------------------------------------------------------

WEB_PORT = 8470
WEB_TOKEN_ENV = "JOBMON_WEB_TOKEN"
WEB_TOKEN_MIN = 16  # characters, when the page listens beyond loopback
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def _add_web_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """``jobmon web`` and ``jobmon metrics``: the page and the metrics of ``jobmon_web``,
    read-only as the monitor role; both need the web extra, imported only when run."""
    web = commands.add_parser(
        "web",
        parents=[common],
        help="serve the page (health, jobs, runs) and /metrics, read-only",
        description="Serve the pg-jobmon page and /metrics (needs the web extra). It listens "
        f"on 127.0.0.1 unless told otherwise; any other address needs a token (${WEB_TOKEN_ENV} "
        "or --token-file), which every request must carry. Every request is a READ ONLY "
        "transaction run as the monitor role.",
    )
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    web.add_argument("--port", type=_port, default=WEB_PORT, help=f"port to listen on ({WEB_PORT})")
    web.add_argument(
        "--token-file",
        type=Path,
        help=f"a file holding the token requests must carry (default ${WEB_TOKEN_ENV}); "
        "needed to listen anywhere but on loopback",
    )
    metrics = commands.add_parser(
        "metrics",
        parents=[common],
        help="print the Prometheus metrics (for node_exporter's textfile collector)",
        description="Print the metrics /metrics serves, in the Prometheus exposition format "
        "(needs the web extra). Exit 1 (the text still printed, with jobmon_up 0) when the "
        "schema cannot be read.",
    )
    for command in (web, metrics):
        command.add_argument(
            "--role",
            default=roles.DEFAULT_MONITOR,
            help=f"the monitor role every read runs as (default {roles.DEFAULT_MONITOR})",
        )
        command.add_argument(
            "--step-metrics",
            action="store_true",
            help="add jobmon_job_last_step_duration_seconds (labelled by step action, cut to "
            "60 characters, 20 steps a job): off by default, as actions holding dates or SQL "
            "make new series at every run",
        )


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number up to 65535, not {value}")
    return value


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _web_token(args: argparse.Namespace) -> str | None:
    """The token of ``jobmon web``: from --token-file, else $JOBMON_WEB_TOKEN; required, and
    at least WEB_TOKEN_MIN characters (a short one is guessed), unless it listens on
    loopback only (anyone who can reach the port could read the log)."""
    if args.token_file is not None:
        try:
            token: str | None = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"jobmon web: cannot read --token-file: {exc}") from None
        if not token:
            raise UsageError(f"jobmon web: the token file {args.token_file} is empty")
    else:
        token = os.environ.get(WEB_TOKEN_ENV, "").strip() or None
    if _is_loopback(args.host):
        return token
    if token is None:
        raise UsageError(
            f"jobmon web: listening on {args.host} would show the job log to anyone who can "
            f"reach the port; set ${WEB_TOKEN_ENV} or --token-file FILE (a long random "
            "string) so that only holders of the token can open the page and /metrics, or "
            "listen on 127.0.0.1 behind a proxy that authenticates"
        )
    if len(token) < WEB_TOKEN_MIN:
        raise UsageError(
            f"jobmon web: listening on {args.host} needs a token of at least {WEB_TOKEN_MIN} "
            f"characters, this one has {len(token)}; make a long random one, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def _web_command(args: argparse.Namespace, secrets: list[str]) -> int:
    """``jobmon web`` / ``jobmon metrics``: import the web extra, or say how to get it."""
    try:
        from jobmon_web import MISSING_EXTRA
        from jobmon_web.database import ReadOnlyDatabase
        from jobmon_web.metrics import scrape

        if args.command == "web":
            import uvicorn  # noqa: F401 - missing: said now, before anything connects

            import jobmon_web.app  # noqa: F401
    except ModuleNotFoundError as exc:  # the web extra is missing
        missing = f"{exc.name} is not installed; {_missing_web_extra()}"
        print(f"jobmon: error: {missing}", file=sys.stderr)
        return 1
    # the pool retries in the background and logs each failed attempt: the one error below
    # says it once
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    try:
        token = _web_token(args) if args.command == "web" else None
        database = ReadOnlyDatabase(
            args.dsn,
            schema=args.schema,
            role=args.role,
            statement_timeout=args.statement_timeout or DEFAULT_STATEMENT_TIMEOUT,
        )
        try:
            if args.command == "metrics":
                text, up = scrape(database, args.step_metrics)
                sys.stdout.write(text.decode())
                return 0 if up else 1
            database.read(lambda conn: conn.execute("SELECT 1"))  # fail now, clearly
            return _serve(database, args, token)
        finally:
            database.close()
    except UsageError as exc:
        print(f"{printable(_scrub(str(exc), secrets))}", file=sys.stderr)
        return 2
    except JobmonError as exc:
        print(f"jobmon: error: {printable(_scrub(str(exc), secrets))}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        print(f"jobmon: error: {exc.name} is not installed; {MISSING_EXTRA}", file=sys.stderr)
        return 1


def _missing_web_extra() -> str:
    try:
        from jobmon_web import MISSING_EXTRA
    except ImportError:  # a core-only install without the jobmon_web package
        return "install pg-jobmon with the web extra: pip install 'pg-jobmon[web]'"
    return str(MISSING_EXTRA)


def _serve(database: Any, args: argparse.Namespace, token: str | None) -> int:
    import uvicorn

    from jobmon_web.app import create_app

    app = create_app(database, token=token, step_metrics=args.step_metrics)
    where = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"pg-jobmon web: http://{where}:{args.port}/ (read-only, as role {database.role}"
        + (", token required)" if token else ")"),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


# -- output helpers ---------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _jobs_table(jobs: list[JobRecord]) -> str:
    return table(
        ["job_id", "job_name", "status", "started", "duration", "owner", "pid"],
        [
            (
                j.job_id,
                j.job_name,
                j.status or "(running)",
                _when(j.start_time),
                format_duration(j.duration),
                j.owner,
                j.pid,
            )
            for j in jobs
        ],
    )


# -- commands ---------------------------------------------------------------------------------


_ROLE_DEFAULTS = {
    "writer": roles.DEFAULT_WRITER,
    "monitor": roles.DEFAULT_MONITOR,
    "admin": roles.DEFAULT_ADMIN,
}


def _role_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The keyword arguments of ``create_roles`` from ``install``'s options; None when
    neither --create-roles nor --print-grants was given."""
    names = {kind: getattr(args, f"{kind}_role") for kind in _ROLE_DEFAULTS}
    flags = {"read_all_stats": args.read_all_stats, "signal_backends": args.signal_backends}
    if not (args.create_roles or args.print_grants):
        if any(v is not None for v in names.values()) or any(flags.values()):
            raise UsageError("jobmon install: role options need --create-roles or --print-grants")
        return None
    for kind, given in names.items():  # '' leaves the role out
        names[kind] = _ROLE_DEFAULTS[kind] if given is None else given or None
    return {**names, **flags}


def _check_usage(args: argparse.Namespace) -> None:
    """The usage errors argparse cannot see, found before anything connects (exit 2, or
    UNKNOWN for ``check``), never after a connection attempt."""
    if args.command == "install":
        args.role_options = _role_options(args)
    elif args.command == "jobs" and args.running and args.status is not None:
        raise UsageError("jobmon jobs: --running and --status cannot be combined")
    elif args.command == "check" and args.state_file is not None and not args.notify:
        raise UsageError("jobmon check: --state-file needs --notify")


def _install(jm: Jobmon, args: argparse.Namespace) -> int:
    role_options = args.role_options
    if role_options is not None and args.print_grants:
        sys.stdout.write(jm.roles_script(**role_options))
        return 0
    applied = jm.install()
    if not applied:
        print(f"schema {jm.schema!r} is already at version {jm.schema_version()}")
    elif applied[0] == 1:
        print(f"installed pg-jobmon in schema {jm.schema!r} at version {applied[-1]}")
    else:
        print(f"upgraded schema {jm.schema!r} from version {applied[0] - 1} to {applied[-1]}")
    if role_options is not None:
        created = jm.create_roles(**role_options)
        for kind in _ROLE_DEFAULTS:
            name = role_options[kind]
            if name is not None:
                state = "created (NOLOGIN)" if name in created else "exists, reused"
                print(f"{kind} role {name!r}: {state}; privileges granted")
        print(
            "grant the roles to login roles (e.g. GRANT jobmon_writer TO etl_jobmon); run "
            "`jobmon install --create-roles` again after every upgrade"
        )
    return 0


def _jobs(jm: Jobmon, args: argparse.Namespace) -> int:
    # "is not None": an empty --name/--like/--status is refused, never read as "all runs".
    # Every filter is in SQL, before the LIMIT (--running with --status is refused earlier).
    if args.running:
        found = jm.show_running(args.limit)
    elif args.like is not None:
        found = jm.show_job_like(args.like, args.limit, status=args.status)
    elif args.status is not None:
        found = jm.show_job_status(args.status, args.limit, name=args.name)
    elif args.name is not None:
        found = jm.show_job(args.name, args.limit)
    else:
        found = jm.show_job_like(".", args.limit)
    print(_jobs_table(found) if found else "no runs found")
    return 0


def _steps(jm: Jobmon, args: argparse.Namespace) -> int:
    digits = args.job.isascii() and args.job.isdigit()  # "²".isdigit(), but int("²") fails
    job: int | str = int(args.job) if digits else args.job
    found = jm.show_detail(job, args.jobs)
    if not found:
        print("no steps found")
        return 0
    print(
        table(
            ["job_id", "step_id", "action", "status", "started", "elapsed", "message"],
            [
                (
                    s.job_id,
                    s.step_id,
                    s.action,
                    s.status or "(running)",
                    _when(s.start_time),
                    format_duration(s.elapsed_time),
                    s.message,
                )
                for s in found
            ],
        )
    )
    return 0


def _config(jm: Jobmon, args: argparse.Namespace) -> int:
    if args.action == "set":
        saved = jm.configure_check(
            args.name,
            warn=args.warn,
            error=args.error,
            sensitivity=args.sensitivity,
            escalate=args.escalate,
            active=not args.inactive,
            warn_duration=args.warn_duration,
            error_duration=args.error_duration,
            duration_factor=args.duration_factor,
            duration_percentile=args.duration_percentile,
            duration_runs=args.duration_runs,
        )
        limits = _duration_limits(saved)
        print(
            f"monitoring {saved.job_name}: warn after {format_duration(saved.warn_threshold)}, "
            f"error after {format_duration(saved.error_threshold)}"
            + (f"; runs too long: {limits}" if limits else "")
            + ("" if saved.active else " (inactive)")
        )
        return 0
    if args.action == "remove":
        if jm.remove_check(args.name):
            print(f"removed the monitoring configuration of {args.name.upper()}")
            return 0
        raise NotFoundError(f"no monitoring configuration for {args.name!r}")
    configs = jm.list_checks()
    if not configs:
        print("no jobs configured; add one with: jobmon config set NAME --warn 25h --error 49h")
        return 0
    print(
        table(
            ["job_name", "warn", "error", "active", "sensitivity", "escalate", "runs too long"],
            [
                (
                    c.job_name,
                    format_duration(c.warn_threshold),
                    format_duration(c.error_threshold),
                    "yes" if c.active else "no",
                    c.sensitivity,
                    c.escalate,
                    _duration_limits(c),
                )
                for c in configs
            ],
        )
    )
    return 0


def _duration_limits(config: CheckConfig) -> str:
    """A job's "runs too long" limits in a few words; empty when it has none."""
    limits = [
        f"{level} over {format_duration(limit)}"
        for level, limit in (("warn", config.warn_duration), ("error", config.error_duration))
        if limit is not None
    ]
    if config.duration_factor is not None:
        limits.append(
            f"warn over {config.duration_factor:g} x percentile {config.duration_percentile:g}"
            f" of last {config.duration_runs} runs"
        )
    return ", ".join(limits)


def _clear(jm: Jobmon, args: argparse.Namespace) -> int:
    deleted = jm.job_log_clear(args.older_than, batch_size=args.batch_size)
    print(f"deleted {deleted} runs older than {format_duration(args.older_than)} (and their steps)")
    return 0


def _version(jm: Jobmon | None, args: argparse.Namespace) -> int:
    print(f"pg-jobmon {__version__}")
    return 0


def _sql_access(jm: Jobmon, args: argparse.Namespace) -> int:
    if args.password_env is not None:
        password = os.environ.get(args.password_env)
        if not password:
            raise InvalidArgumentError(
                f"--password-env: the environment variable {args.password_env} is not set"
            )
    elif sys.stdin.isatty():
        import getpass  # only on a terminal

        password = getpass.getpass(f"password of role {args.role} (empty: none): ") or None
    else:
        password = None
        print(
            f"no password given (--password-env, or a terminal): role {args.role!r} can log "
            "from SQL only if it is a superuser (dblink's rule for other roles)",
            file=sys.stderr,
        )
    jm.allow_sql_logging(args.role, password)
    print(
        f"role {args.role!r} may log from SQL through the loopback server "
        f"({'with' if password else 'without'} a password)"
    )
    return 0


COMMANDS: dict[str, Callable[[Jobmon, argparse.Namespace], int]] = {
    "install": _install,
    "sql-access": _sql_access,
    "jobs": _jobs,
    "steps": _steps,
    "config": _config,
    "clear": _clear,
}


# -- check --------------------------------------------------------------------------------------


def _alerts_json(alerts: list[Alert], code: int, seconds: float) -> str:
    return json.dumps(
        {
            "status": nagios.STATE_NAMES[code],
            "exit_code": code,
            "worst_code": worst(alerts),
            "alerts": [a.to_dict() for a in alerts],
            "seconds": round(seconds, 6),
        },
        indent=2,
    )


def _unknown(reason: str, fmt: str) -> int:
    line, code = nagios.unknown(reason)
    if fmt == "json":
        print(json.dumps({"status": "UNKNOWN", "exit_code": code, "error": reason}, indent=2))
    else:
        print(line)
    return code


def _check(args: argparse.Namespace, secrets: list[str]) -> int:
    jm: Jobmon | None = None

    def give_up(signum: int, frame: FrameType | None) -> None:
        if jm is not None:
            jm.cancel()  # do not leave the query waiting in the server
        _unknown(f"check timed out after {args.timeout} s", args.format)
        sys.stdout.flush()
        os._exit(UNKNOWN_EXIT)

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(args.timeout)
    started = time.monotonic()
    try:
        plugins = new_plugin_manager(load_entry_points=args.notify)
        if args.notify and args.webhook_url:
            plugins.register(WebhookNotifier(args.webhook_url), "webhook")
        if args.notify and not plugins.hook.jobmon_alerts_found.get_hookimpls():
            raise UsageError(f"--notify needs --webhook-url, ${ENV_VAR} or a pg_jobmon plugin")
        jm = Jobmon(
            args.dsn,
            schema=args.schema,
            **_session_args(args),
            connect_timeout=max(1, args.timeout - 1),
            plugins=plugins,
        )
        if args.notify and args.state_file is not None:
            jm.alert_state = _load_state(args.state_file)
            alerts = jm.check_job_status(args.history)
            _save_state(args.state_file, jm.alert_state)
        else:  # --notify: the schema's job_alert_state, shared with every other checker
            alerts = jm.check_job_status(args.history, shared_state=args.notify)
        jm.close()
    except (JobmonError, UsageError) as exc:
        return _unknown(_scrub(str(exc), secrets), args.format)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.monotonic() - started
    output, code = nagios.render(alerts, seconds)
    print(_alerts_json(alerts, code, seconds) if args.format == "json" else output)
    return code


def _load_state(path: Path) -> dict[str | None, int]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the --notify state file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise UsageError(f"the --notify state file {path} is not a jobmon state file")
    return data


def _save_state(path: Path, state: dict[str | None, int]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, sort_keys=True))
        temporary.replace(path)  # atomic: a concurrent check never reads half a file
    except OSError as exc:
        raise UsageError(f"cannot write the --notify state file {path}: {exc}") from None


# -- keeping secrets out of messages ------------------------------------------------------------

HIDDEN = "<hidden>"
_OPTION_NAME = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")
_COMMAND_WORDS = frozenset(
    {"install", "check", "jobs", "steps", "config", "clear", "version", "set", "list", "remove"}
    | {"web", "metrics", "sql-access"}
)


def _parts(token: str) -> list[str]:
    """``token`` and the values argparse may cut out of it: ``--opt=VALUE``, ``-tVALUE``."""
    found = [token]
    if token.startswith("-"):
        found.append(token.partition("=")[2])
        if not token.startswith("--"):
            found.append(token[2:])
    return [part for part in found if part]


def _password(text: str) -> str | None:
    """The password in a connection string (URI or key=value), if it holds one."""
    try:
        value = conninfo_to_dict(text).get("password")
    except Exception:  # not a connection string
        return None
    return None if value is None else str(value)


def _holds_secret(part: str) -> bool:
    """A connection string with a password, or what may be one that libpq cannot parse."""
    if ("://" in part and "@" in part) or "password" in part.lower():
        return True
    return _password(part) is not None


def _secrets(argv: Sequence[str], *, values: bool) -> list[str]:
    """What a message must not repeat from ``argv``: connection strings holding a password,
    and the password; with ``values``, every value (all but option names and command words),
    because a mistyped command line can put a password anywhere."""
    found: set[str] = set()
    for token in argv:
        if _OPTION_NAME.fullmatch(token) or token in _COMMAND_WORDS:
            continue
        for part in _parts(token):
            if values or _holds_secret(part):
                found.add(part)
                password = _password(part)
                if password:
                    found |= {password, quote(password, safe="")}  # as a URI spells it
    found |= {repr(part)[1:-1] for part in found}  # as %r / {!r} show it
    return sorted(found, key=len, reverse=True)


def _scrub(message: str, secrets: Sequence[str]) -> str:
    """``message`` with every secret replaced, where it stands as a whole word."""
    for secret in secrets:
        message = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", HIDDEN, message)
    return message


def _command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option or the value of
    a global option), found without parsing, for errors that argparse raises."""
    takes_value = False
    for token in argv:
        if takes_value:
            takes_value = False
        elif token.startswith("-"):
            takes_value = "=" not in token and any(
                option.startswith(token) for option in _VALUE_OPTIONS if len(token) > 2
            )
        else:
            return token
    return None


def _wants_json(argv: Sequence[str]) -> bool:
    for before, token in zip(["", *argv], argv, strict=False):
        if token == "json" and len(before) > 3 and "--format".startswith(before):
            return True
        name, _, value = token.partition("=")
        if value == "json" and len(name) > 3 and "--format".startswith(name):
            return True
    return False


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:  # plugin failures and warnings go to stderr
        logging.basicConfig(level=logging.WARNING, format="jobmon: %(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_usage(args)
    except UsageError as exc:  # nothing has connected yet
        message = _scrub(str(exc), _secrets(argv, values=True))
        if _command(argv) == "check":
            return _unknown(f"bad arguments: {message}", "json" if _wants_json(argv) else "nagios")
        print(f"{printable(message)}\n(see jobmon --help)", file=sys.stderr)
        return 2
    secrets = _secrets(argv, values=False)
    if args.command == "check":
        return _check(args, secrets)
    if args.command == "version":
        return _version(None, args)
    if args.command in ("web", "metrics"):
        return _web_command(args, secrets)
    try:
        jm = Jobmon(args.dsn, schema=args.schema, **_session_args(args))
        try:
            return COMMANDS[args.command](jm, args)
        finally:
            jm.close()
    except JobmonError as exc:  # one line, whatever names or texts the message quotes
        print(f"jobmon: error: {printable(_scrub(str(exc), secrets))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobmon: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
