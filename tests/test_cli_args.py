"""The jobmon command's arguments: global options anywhere, no password in any argument
error, usage errors before any connection, filters in SQL, honest install messages, and
(``--notify`` keeping its state in the schema: test_plugin_wiring.py)."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from jobmon_core.cli import main

from .test_cli import process

SECRET = "s3cretPW-Cli"
BAD_DSN = f"postgresql://root:{SECRET}@127.0.0.1:1/db"
KV_DSN = f"host=127.0.0.1 port=1 user=root password={SECRET} dbname=db"


@pytest.fixture
def run(capsys):
    """``main(argv)`` in-process; (exit code, stdout + stderr)."""

    def call(*argv: str) -> tuple[int, str]:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # --help
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out + err

    return call


# -- global options before or after the command (#13.3) ------------------------------------


def test_global_options_work_after_the_command(run, dsn, jm):
    jm.fail_job(jm.add_job("late option"))
    code, out = run("check", "--dsn", dsn, "--schema", jm.schema, "--no-prepare")
    assert code == 0, out
    assert out.startswith("JOBMON OK")
    code, out = run("jobs", "--name", "late option", "--dsn", dsn, "--schema", jm.schema,
                    "--lock-timeout", "2", "--statement-timeout", "30s")  # fmt: skip
    assert code == 0, out
    assert "LATE OPTION" in out
    code, out = run("config", "--dsn", dsn, "set", "nightly", "--schema", jm.schema,
                    "--warn", "1h", "--error", "2h")  # fmt: skip
    assert (code, out.strip()) == (0, "monitoring NIGHTLY: warn after 1 h, error after 2 h")
    code, out = run("config", "list", "--dsn", dsn, "--schema", jm.schema)
    assert "NIGHTLY" in out
    code, out = run("steps", "late option", "--schema", jm.schema, "--dsn", dsn)
    assert (code, out.strip()) == (0, "no steps found")


def test_an_option_after_the_command_wins_over_one_before(run, dsn, jm):
    code, out = run("--schema", "nowhere", "check", "--dsn", dsn, "--schema", jm.schema)
    assert code == 0, out


def test_install_with_the_dsn_after_the_command_as_the_readme_shows(dsn, schema_name):
    done = process("install", "--dsn", dsn, "--schema", schema_name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"installed pg-jobmon in schema {schema_name!r}")


# -- no password in any argument error (#13.3) -----------------------------------------------

COMMANDS = [
    ["install"],
    ["install", "--print-grants"],
    ["check"],
    ["check", "--format", "json"],
    ["jobs"],
    ["steps", "1"],
    ["config", "set", "x", "--warn", "1h", "--error", "2h"],
    ["config", "list"],
    ["config", "remove", "x"],
    ["clear", "--older-than", "30d"],
    ["version"],
]


def _mistakes(command: list[str], secret_dsn: str) -> list[list[str]]:
    """The command with the connection string in every position a mistake puts it."""
    found = []
    for at in range(len(command) + 1):  # as a stray word anywhere
        found.append([*command[:at], secret_dsn, *command[at:]])
    found += [
        [*command, "--dns", secret_dsn],  # a misspelled option
        [*command, f"--dns={secret_dsn}"],
        [*command, "--ds", secret_dsn, "--bogus"],  # an abbreviation, and an unknown option
        [*command, f"--s={secret_dsn}"],  # an ambiguous abbreviation with a value
        [*command, "--dsn"],  # a missing value, the secret nowhere
        [*command, "--limit", secret_dsn],  # a bad value
        [*command, "--lock-timeout", secret_dsn],
        [*command, "-t", secret_dsn],
        [*command, f"-t{secret_dsn}"],
        [*command, "--format", secret_dsn],
        ["--dsn", secret_dsn, *command, "--bogus"],
        [*command, "--dsn", secret_dsn, "--bogus", secret_dsn],
        ["--history", secret_dsn, *command],
    ]
    return found


@pytest.mark.parametrize("secret_dsn", [BAD_DSN, KV_DSN])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_argument_error_repeats_a_password(run, command, secret_dsn):
    for argv in _mistakes(command, secret_dsn):
        _code, said = run(*argv)
        assert SECRET not in said, (argv, said)
        assert "Traceback" not in said


def test_argument_errors_still_name_the_option(run):
    code, said = run("jobs", "--limit", BAD_DSN)
    assert code == 2
    assert said.startswith("jobmon jobs: argument --limit: not a whole number: '<hidden>'")
    code, said = run("check", "--dsn", BAD_DSN, "--bogus")
    assert code == 3
    assert said.startswith(
        "JOBMON UNKNOWN - bad arguments: jobmon: unrecognized arguments: --bogus"
    )
    code, said = run("check", "--format", "json", "--timeout", "0")
    assert json.loads(said)["error"].startswith("bad arguments: jobmon check: argument -t/")


def test_no_password_from_a_real_process_with_a_misplaced_dsn():
    for argv in (["install", "--dsn", BAD_DSN, "--bogus"], ["check", "--dns", BAD_DSN],
                 ["config", "remove", BAD_DSN], ["jobs", "--name", "x", BAD_DSN]):  # fmt: skip
        done = process(*argv)
        assert SECRET not in done.stdout + done.stderr, argv
        assert "Traceback" not in done.stderr


def test_a_dsn_given_as_a_value_is_not_echoed_by_later_errors(run, dsn, jm):
    """Parsed fine, but the connection string landed where a name goes."""
    code, said = run("--dsn", dsn, "--schema", jm.schema, "config", "remove", BAD_DSN)
    assert code == 1
    assert said.startswith("jobmon: error: no monitoring configuration for '<hidden>'")
    code, said = run("--dsn", dsn, "--schema", BAD_DSN, "jobs")
    assert code == 1
    assert SECRET not in said


# -- usage errors before any connection (#12.6) ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["jobs", "--running", "--status", "OK"], 2, "--running and --status cannot be combined"),
        (["install", "--writer-role", "w"], 2, "need --create-roles or --print-grants"),
        (["check", "--state-file", "/tmp/x.json"], 3, "--state-file needs --notify"),
    ],
)
def test_usage_errors_exit_before_connecting(run, argv, code, message):
    got, said = run("--dsn", BAD_DSN, *argv)  # nothing listens there: a connection would fail
    assert got == code, said
    assert message in said
    assert "cannot connect" not in said


# -- filters in SQL, before the limit (#12.6) ------------------------------------------------


def test_jobs_like_with_status_finds_a_run_beyond_the_limit(run, dsn, jm):
    failed = jm.add_job("alpha load")
    jm.fail_job(failed)
    for _ in range(5):
        jm.close_job(jm.add_job("alpha load"))
    code, out = run("--dsn", dsn, "--schema", jm.schema, "jobs", "--like", "^alpha",
                    "--status", "CRITICAL", "--limit", "3")  # fmt: skip
    assert code == 0
    _header, _rule, *body = out.splitlines()
    assert [line.split()[0] for line in body] == [str(failed)]
    assert [j.job_id for j in jm.show_job_like("^ALPHA", 3, status="CRITICAL")] == [failed]


# -- install says what it did (#13.6) --------------------------------------------------------


def test_install_says_installed_upgraded_or_already(run, dsn, schema_name, monkeypatch):
    from jobmon_core import Jobmon, schema

    shipped = schema.load_migrations()
    newest = len(shipped)
    base = ["--dsn", dsn, "--schema", schema_name]
    code, out = run(*base, "install")
    assert (code, out.strip()) == (
        0,
        f"installed pg-jobmon in schema {schema_name!r} at version {newest}",
    )
    code, out = run(*base, "install")
    assert (code, out.strip()) == (0, f"schema {schema_name!r} is already at version {newest}")
    older = schema_name + "_old"
    with monkeypatch.context() as patch:  # a schema installed by the release of version 6
        patch.setattr(schema, "load_migrations", lambda: shipped[:6])
        with Jobmon(dsn, schema=older) as jm:
            assert jm.install() == [1, 2, 3, 4, 5, 6]
    try:
        code, out = run("--dsn", dsn, "--schema", older, "install")
        assert (code, out.strip()) == (
            0,
            f"upgraded schema {older!r} from version 6 to {newest}",
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(older)))
