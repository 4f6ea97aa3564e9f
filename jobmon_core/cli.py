"""The ``jobmon`` command: install, check (a Nagios/Icinga plugin), reports, config, retention.

Errors are one clear line on stderr and a non-zero exit, never a traceback and never the
password. ``jobmon check`` follows the Monitoring Plugins rules: exit 0/1/2 for OK, WARNING,
CRITICAL and 3 (UNKNOWN) whenever it could not check, bad arguments included.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import NoReturn

from . import __version__, nagios
from .alerts import Alert, worst
from .durations import format_duration, parse_duration
from .errors import JobmonError
from .jobmon import Jobmon
from .notifiers.webhook import ENV_VAR, WebhookNotifier
from .plugins import new_plugin_manager
from .reports import JobRecord
from .text import table

EXAMPLES = """\
examples:
  jobmon install                                  create or upgrade the schema
  jobmon check                                    Nagios/Icinga check (exit 0/1/2/3)
  jobmon check --history 3d --format json         the alerts as JSON
  jobmon check --notify --webhook-url URL         POST to URL when a job's level changes
  jobmon jobs --name 'nightly load' --limit 5     the newest runs of a job
  jobmon jobs --running                           runs in progress
  jobmon steps 42                                 the steps of run 42
  jobmon config set 'nightly load' --warn 25h --error 49h
  jobmon clear --older-than 30d                   delete old runs, in batches

The database comes from --dsn, else JOBMON_DSN, else the libpq variables (PGHOST, ...).
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


def _non_negative_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of 0 or more, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jobmon",
        description="pg-jobmon: job logging and Nagios-style job monitoring for PostgreSQL.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dsn", help="libpq connection string (default: $JOBMON_DSN, libpq env)")
    parser.add_argument("--schema", default="jobmon", help="the jobmon schema (default: jobmon)")
    parser.add_argument("-V", "--version", action="version", version=f"pg-jobmon {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    commands.add_parser("install", help="create or upgrade the jobmon schema")

    check = commands.add_parser(
        "check",
        help="run check_job_status as a Nagios/Icinga plugin",
        description="Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (could not check).",
    )
    check.add_argument("--history", type=_duration, help="window to look back (e.g. 3d)")
    check.add_argument("--format", choices=["nagios", "json"], default="nagios")
    check.add_argument(
        "-t", "--timeout", type=_positive_int, default=10, help="give up after N s (default 10)"
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
        "--state-file", type=Path, help="with --notify: where the last levels are kept"
    )

    jobs = commands.add_parser("jobs", help="list runs, newest first")
    which = jobs.add_mutually_exclusive_group()
    which.add_argument("--name", help="runs of this job")
    which.add_argument("--like", metavar="REGEX", help="runs of jobs matching (case-insensitive)")
    which.add_argument("--running", action="store_true", help="runs in progress")
    jobs.add_argument("--status", help="only runs with this status text (e.g. CRITICAL)")
    jobs.add_argument("--limit", type=_positive_int, default=10)

    steps = commands.add_parser("steps", help="the steps of a run (JOB_ID) or of a job (NAME)")
    steps.add_argument("job", metavar="JOB_ID|NAME")
    steps.add_argument("--jobs", type=_positive_int, default=1, help="newest N runs of NAME")

    config = commands.add_parser("config", help="monitoring configuration (job_check_config)")
    config_commands = config.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    config_commands.required = True
    set_ = config_commands.add_parser("set", help="create or replace a job's monitoring")
    set_.add_argument("name")
    set_.add_argument("--warn", type=_duration, required=True, help="MISSING (warning) after")
    set_.add_argument("--error", type=_duration, required=True, help="MISSING (critical) after")
    set_.add_argument("--sensitivity", type=_non_negative_int, default=0)
    set_.add_argument("--escalate", type=_positive_int)
    set_.add_argument("--inactive", action="store_true", help="mute: never alert on this job")
    config_commands.add_parser("list", help="show every configured job")
    remove = config_commands.add_parser("remove", help="stop monitoring a job specially")
    remove.add_argument("name")

    clear = commands.add_parser("clear", help="delete runs older than a duration (job_log_clear)")
    clear.add_argument("--older-than", type=_duration, required=True, metavar="DURATION")
    clear.add_argument("--batch-size", type=_positive_int, default=10_000)

    commands.add_parser("version", help="print the version")
    return parser


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


def _install(jm: Jobmon, args: argparse.Namespace) -> int:
    applied = jm.install()
    version = jm.schema_version()
    if applied:
        print(f"schema {jm.schema!r} upgraded to version {version} (applied {applied})")
    else:
        print(f"schema {jm.schema!r} is up to date (version {version})")
    return 0


def _jobs(jm: Jobmon, args: argparse.Namespace) -> int:
    if args.running:
        found = jm.show_running(args.limit)
        if args.status:
            raise UsageError("jobmon jobs: --running and --status cannot be combined")
    elif args.like:
        found = jm.show_job_like(args.like, args.limit)
        if args.status:
            found = [j for j in found if j.status == args.status]
    elif args.status:
        found = jm.show_job_status(args.status, args.limit, name=args.name)
    elif args.name:
        found = jm.show_job(args.name, args.limit)
    else:
        found = jm.show_job_like(".", args.limit)
    print(_jobs_table(found) if found else "no runs found")
    return 0


def _steps(jm: Jobmon, args: argparse.Namespace) -> int:
    job: int | str = int(args.job) if args.job.isdigit() else args.job
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
        )
        print(
            f"monitoring {saved.job_name}: warn after {format_duration(saved.warn_threshold)}, "
            f"error after {format_duration(saved.error_threshold)}"
            + ("" if saved.active else " (inactive)")
        )
        return 0
    if args.action == "remove":
        if jm.remove_check(args.name):
            print(f"removed the monitoring configuration of {args.name.upper()}")
            return 0
        print(f"jobmon: no monitoring configuration for {args.name!r}", file=sys.stderr)
        return 1
    configs = jm.list_checks()
    if not configs:
        print("no jobs configured; add one with: jobmon config set NAME --warn 25h --error 49h")
        return 0
    print(
        table(
            ["job_name", "warn", "error", "active", "sensitivity", "escalate"],
            [
                (
                    c.job_name,
                    format_duration(c.warn_threshold),
                    format_duration(c.error_threshold),
                    "yes" if c.active else "no",
                    c.sensitivity,
                    c.escalate,
                )
                for c in configs
            ],
        )
    )
    return 0


def _clear(jm: Jobmon, args: argparse.Namespace) -> int:
    deleted = jm.job_log_clear(args.older_than, batch_size=args.batch_size)
    print(f"deleted {deleted} runs older than {format_duration(args.older_than)} (and their steps)")
    return 0


def _version(jm: Jobmon | None, args: argparse.Namespace) -> int:
    print(f"pg-jobmon {__version__}")
    return 0


COMMANDS: dict[str, Callable[[Jobmon, argparse.Namespace], int]] = {
    "install": _install,
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


def _check(args: argparse.Namespace) -> int:
    jm: Jobmon | None = None

    def give_up(signum: int, frame: FrameType | None) -> None:
        if jm is not None:
            jm.cancel()  # do not leave the query waiting in the server
        _unknown(f"check timed out after {args.timeout} s", args.format)
        sys.stdout.flush()
        os._exit(nagios.UNKNOWN_EXIT)

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
            connect_timeout=max(1, args.timeout - 1),
            plugins=plugins,
        )
        state_file = args.state_file or _default_state_file(jm)
        if args.notify:
            jm.alert_state = _load_state(state_file)
        alerts = jm.check_job_status(args.history)
        if args.notify:
            _save_state(state_file, jm.alert_state)
        jm.close()
    except (JobmonError, UsageError) as exc:
        return _unknown(str(exc), args.format)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.monotonic() - started
    output, code = nagios.render(alerts, seconds)
    print(_alerts_json(alerts, code, seconds) if args.format == "json" else output)
    return code


def _default_state_file(jm: Jobmon) -> Path:
    """One state file per database and schema, under $XDG_STATE_HOME (~/.local/state)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    key = hashlib.sha256(f"{jm!r}".encode()).hexdigest()[:16]
    return base / "pg-jobmon" / f"check-{key}.json"


def _load_state(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the --notify state file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise UsageError(f"the --notify state file {path} is not a jobmon state file")
    return data


def _save_state(path: Path, state: dict[str, int]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, sort_keys=True))
        temporary.replace(path)  # atomic: a concurrent check never reads half a file
    except OSError as exc:
        raise UsageError(f"cannot write the --notify state file {path}: {exc}") from None


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:  # plugin failures and warnings go to stderr
        logging.basicConfig(level=logging.WARNING, format="jobmon: %(message)s")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        if "check" in argv:
            fmt = "json" if "json" in argv else "nagios"
            return _unknown(f"bad arguments: {exc}", fmt)
        print(f"{exc}\n(see jobmon --help)", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(args)
    if args.command == "version":
        return _version(None, args)
    try:
        jm = Jobmon(args.dsn, schema=args.schema)
        try:
            return COMMANDS[args.command](jm, args)
        finally:
            jm.close()
    except UsageError as exc:
        print(f"{exc}\n(see jobmon --help)", file=sys.stderr)
        return 2
    except JobmonError as exc:
        print(f"jobmon: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobmon: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
