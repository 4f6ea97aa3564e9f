"""Hostile and bad input, property-based (hypothesis), against a real PostgreSQL.

Every public function and every argument of the ``jobmon`` command gets arbitrary input:
any Unicode, control characters, NUL, lone surrogates, huge and empty texts, ids beyond
bigint, wrong types, odd durations, schema and table names full of quotes. The property is
always the same: either the call works and what it stored reads back identical (job names
upper-cased by the database's ``upper()``, as documented), or it raises a
:class:`JobmonError` whose message names the argument and the problem, and nothing in the
jobmon tables changed. Never a psycopg error, a ``UnicodeEncodeError``, a traceback.

The number of examples scales with ``JOBMON_FUZZ_SCALE`` (default 1); the inputs actually
tried are counted and printed at the end of the module.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from psycopg import sql

from devtools.pg import conninfo_params
from jobmon_core import (
    Alert,
    CheckConfig,
    CheckHistoryError,
    InvalidArgumentError,
    Jobmon,
    JobmonError,
    JobNotFoundError,
    JobRecord,
    RunState,
    StatusTableError,
    StatusTextError,
    StepNotFoundError,
    StepRecord,
    aio,
    nagios,
)
from jobmon_core.cli import main as cli_main
from jobmon_core.durations import format_duration, parse_duration
from jobmon_core.text import table
from jobmon_core.validation import MAX_DURATION, MAX_ID, MAX_INT, MAX_KEY_BYTES

SCALE = float(os.environ.get("JOBMON_FUZZ_SCALE", "1"))
# Hypothesis caches Unicode tables and source constants in ./.hypothesis even without an
# example database: keep all of it in a temporary directory, removed after this module.
HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="jobmon-fuzz-hypothesis-")
set_hypothesis_home_dir(HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, HYPOTHESIS_HOME, ignore_errors=True)
TRIED: Counter[str] = Counter()
ROOT = Path(__file__).resolve().parent.parent
_schemas = itertools.count(1)


def fuzz(examples: int) -> settings:
    """Settings for one property: a fixed number of examples, no deadline (the machine may
    be busy), and no example database (nothing is written under the repository)."""
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# -- strategies -------------------------------------------------------------------------------

SPECIAL_CHARS = [
    "\x00", "\ud800", "\udcff", "\udfff", "\n", "\r\n", "\t", "\x1b[31m", "\x7f", "\x85",
    "\u2028", "\u202e", "\ufeff", "\u200b", "'", '"', "\\", ";", "%", "%s", "%(x)s", "{}",
    "|", "$$", "--", "/*", "ß", "ǆ", "ΐ", "İ", "ﬃ", "𝄞", "\U0010ffff", " ", "\u00a0", "\u3000",
]  # fmt: skip
SPECIAL_TEXTS = [
    "", " ", "\t\n ", "\u00a0", "\x00", "a\x00b", "\udcff", "ok\ud800",
    "'; DELETE FROM job_log; --",
    "Robert'); DROP TABLE job_detail;--", "%s%s%s", "%(name)s", "{name}", "x" * 63, "é" * 32,
    "\x1b]0;owned\x07", "A|B", "line\nbreak", "NULL", "null", "None",
]  # fmt: skip

pieces = st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARS))


def texts(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Any characters (surrogates included) mixed with the special pieces above."""
    return st.lists(pieces, min_size=min_size, max_size=max_size).map("".join)


hostile_text = st.one_of(texts(), st.sampled_from(SPECIAL_TEXTS), st.text(max_size=5))
# Repeated characters of 1 to 4 bytes, from 130 to 1000 of them: across the 800-byte limit.
long_text = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["a", "é", "€", "𝄞", "ΐ", "ﬃ"]),
    st.integers(130, 1000),
)
wrong_type = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
)
any_text = st.one_of(hostile_text, long_text)
text_or_junk = st.one_of(any_text, wrong_type)

ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, MAX_ID, MAX_ID + 1, 2**64, -(2**63)]),
    st.booleans(),
    st.floats(),
    st.none(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=1),
)
counts = st.one_of(
    st.integers(min_value=-5, max_value=50),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, MAX_ID, MAX_ID + 1]),
    st.booleans(),
    st.floats(),
    st.none(),
    st.text(max_size=2),
)
durations = st.one_of(
    st.timedeltas(min_value=timedelta(0), max_value=MAX_DURATION),
    st.timedeltas(),
    st.sampled_from(
        [
            timedelta(0),
            timedelta(microseconds=-1),
            timedelta(microseconds=1),
            MAX_DURATION,
            MAX_DURATION + timedelta(microseconds=1),
            timedelta.max,
            timedelta.min,
        ]
    ),
    st.sampled_from(["1 day", "3d", "P1D", 3600, 1.5, None, b"1d"]),
)


# -- oracles ----------------------------------------------------------------------------------


def text_problem(
    value: object, *, none: bool = False, empty: bool = True, max_bytes: int | None = None
) -> str | None:
    """What is wrong with a text argument (a fragment its error must contain), or None."""
    if value is None:
        return None if none else "must be a string"
    if not isinstance(value, str):
        return "must be a string"
    if not empty and not value.strip():
        return "must not be empty"
    if "\x00" in value:
        return "NUL character"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return "lone surrogate"
    if max_bytes is not None and len(value.encode()) > max_bytes:
        return f"the limit is {max_bytes} bytes"
    return None


def name_problem(value: object) -> str | None:
    return text_problem(value, empty=False, max_bytes=MAX_KEY_BYTES)


def identifier_problem(value: object) -> str | None:
    """A schema or status table name: any text PostgreSQL takes as a name, except '%'."""
    problem = text_problem(value, empty=False)
    if problem is not None or not isinstance(value, str):
        return problem
    if len(value.encode()) > 63:
        return "63-byte limit"
    if "%" in value:
        return "contains '%'"
    return problem


def id_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an int"
    if not 1 <= value <= MAX_ID:
        return "must be between 1 and"
    return None


def count_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "must be a positive int"
    if value > MAX_ID:
        return "must be at most"
    return None


def duration_problem(value: object) -> str | None:
    if not isinstance(value, timedelta):
        return "must be a datetime.timedelta"
    if value < timedelta(0):
        return "must not be negative"
    if value > MAX_DURATION:
        return "at most 1000 years"
    return None


# -- the database -----------------------------------------------------------------------------


def snapshot(db: psycopg.Connection, schema: str) -> dict[str, tuple[int, str]]:
    """Row count and checksum of every table of ``schema``: what "nothing changed" means."""
    tables = db.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1",
        [schema],
    ).fetchall()
    parts = [
        sql.SQL(
            "SELECT {name}::text, count(*),"
            " md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), ''))"
            " FROM {table} AS t"
        ).format(name=sql.Literal(name), table=sql.Identifier(schema, name))
        for (name,) in tables
    ]
    return {row[0]: (row[1], row[2]) for row in db.execute(sql.SQL(" UNION ALL ").join(parts))}


def refused(
    db: psycopg.Connection,
    schema: str,
    call: Callable[[], object],
    *fragments: str,
    error: type[JobmonError] = InvalidArgumentError,
) -> JobmonError:
    """``call`` raises ``error`` (never a psycopg or Python error), its message holds every
    fragment, and no row of ``schema`` changed."""
    before = snapshot(db, schema)
    with pytest.raises(error) as caught:
        call()
    assert not isinstance(caught.value, psycopg.Error)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert snapshot(db, schema) == before
    return caught.value


def attempt(call: Callable[[], object]) -> tuple[object, JobmonError | None]:
    """``(result, None)``, or ``(None, error)`` when ``call`` raised a JobmonError (any other
    exception propagates and fails the test)."""
    try:
        return call(), None
    except JobmonError as exc:
        return None, exc


def db_upper(db: psycopg.Connection, value: str) -> str:
    row = db.execute("SELECT upper(%s)", [value]).fetchone()
    assert row is not None
    upper: str = row[0]
    return upper


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def installed(dsn: str, schema: str | None = None, **kwargs: Any) -> Iterator[Jobmon]:
    schema = schema or f"jm_fuzz_{os.getpid()}_{next(_schemas)}"
    jm = Jobmon(dsn, schema=schema, **kwargs)
    jm.install()
    try:
        yield jm
    finally:
        jm.close()
        drop_schema(dsn, schema)


@pytest.fixture(scope="module", autouse=True)
def report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how many inputs each property tried (for RELIABILITY.md)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not TRIED:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(
            f"fuzz: {sum(TRIED.values())} inputs tried over {len(TRIED)} properties"
        )
        for name, n in sorted(TRIED.items()):
            reporter.write_line(f"fuzz:   {n:6d}  {name}")


@pytest.fixture(scope="module")
def db(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def fz(dsn: str) -> Iterator[Jobmon]:
    """A Jobmon on a schema of this module's own."""
    with installed(dsn) as jm:
        yield jm


@pytest.fixture(scope="module")
def empty(dsn: str) -> Iterator[Jobmon]:
    """A Jobmon on a schema that stays empty: every id is an id that does not exist."""
    with installed(dsn) as jm:
        yield jm


@pytest.fixture(scope="module")
def open_job(fz: Jobmon) -> int:
    return fz.add_job("fuzz steps")


@pytest.fixture(scope="module")
def open_step(fz: Jobmon, open_job: int) -> int:
    return fz.add_step(open_job, "fuzz updates")


@pytest.fixture(scope="module")
def work(dsn: str) -> Iterator[psycopg.Connection]:
    """A work connection in a transaction, as a user's job would have; rolled back after
    each example, with a short statement_timeout so fuzzed SQL cannot hang."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET statement_timeout = '5s'")
        conn.commit()
        yield conn


# -- the writer -------------------------------------------------------------------------------


@fuzz(150)
@given(name=st.one_of(any_text, wrong_type))
@example(name="\x00")
@example(name="\udcff")
@example(name=" ")
@example(name="a" * 801)
@example(name="ΐ" * 400)
@example(name="'; DROP TABLE job_log; --")
def test_add_job_name(fz, db, name):
    TRIED["add_job(name)"] += 1
    problem = name_problem(name)
    if problem:
        refused(db, fz.schema, lambda: fz.add_job(name), "job name", problem)
        return
    job_id = fz.add_job(name)
    stored = db.execute(
        sql.SQL("SELECT job_name, end_time, status, run_key FROM {} WHERE job_id = %s").format(
            sql.Identifier(fz.schema, "job_log")
        ),
        [job_id],
    ).fetchone()
    assert stored == (db_upper(db, name), None, None, None)
    assert fz.show_job(name, 1)[0].job_id == job_id


@fuzz(150)
@given(action=st.one_of(any_text, wrong_type))
@example(action="")
@example(action="\x00")
@example(action="\ud800")
@example(action="x" * 5000)
def test_add_step_action(fz, db, open_job, action):
    TRIED["add_step(action)"] += 1
    problem = text_problem(action)
    if problem:
        refused(db, fz.schema, lambda: fz.add_step(open_job, action), "action", problem)
        return
    step_id = fz.add_step(open_job, action)
    stored = db.execute(
        sql.SQL("SELECT job_id, action, status, message FROM {} WHERE step_id = %s").format(
            sql.Identifier(fz.schema, "job_detail")
        ),
        [step_id],
    ).fetchone()
    assert stored == (open_job, action, None, None)
    assert [s.action for s in fz.show_detail(open_job) if s.step_id == step_id] == [action]


@fuzz(150)
@given(status=st.one_of(any_text, wrong_type), message=st.one_of(any_text, wrong_type))
@example(status="", message=None)
@example(status="OK", message="a\x00b")
@example(status="\udcff", message="fine")
@example(status="OK", message="\n\t\r ")
def test_update_step_status_and_message(fz, db, open_job, open_step, status, message):
    TRIED["update_step(status, message)"] += 1
    problem = text_problem(status)
    if problem:
        refused(
            db, fz.schema, lambda: fz.update_step(open_step, status, message), "status", problem
        )
        return
    problem = text_problem(message, none=True)
    if problem:
        refused(
            db, fz.schema, lambda: fz.update_step(open_step, status, message), "message", problem
        )
        return
    fz.update_step(open_step, status, message)
    (step,) = [s for s in fz.show_detail(open_job) if s.step_id == open_step]
    assert (step.status, step.message) == (status, message)
    assert step.end_time is not None


CALLS_WITH_IDS: dict[str, Callable[[Jobmon, Any, psycopg.Connection], object]] = {
    "add_step": lambda jm, i, _: jm.add_step(i, "x"),
    "update_step": lambda jm, i, _: jm.update_step(i, "OK", "x"),
    "close_job": lambda jm, i, _: jm.close_job(i),
    "fail_job": lambda jm, i, _: jm.fail_job(i, 2),
    "cancel_job": lambda jm, i, _: jm.cancel_job(i),
    "show_detail": lambda jm, i, _: jm.show_detail(i),
    "add_step(step_key)": lambda jm, i, _: jm.add_step(i, "x", step_key="k"),
    "sql_step": lambda jm, i, work: jm.sql_step(i, "x", "SELECT 1", conn=work),
}


@fuzz(200)
@given(call=st.sampled_from(sorted(CALLS_WITH_IDS)), value=ids)
@example(call="add_step", value=MAX_ID + 1)
@example(call="close_job", value=True)
@example(call="update_step", value=2**64)
@example(call="show_detail", value=1.0)
def test_ids(empty, db, work, call, value):
    """Ids: wrong types and out-of-range values are refused; ids that fit but do not exist
    are NotFoundErrors (this schema is empty); nothing is written either way."""
    TRIED["ids (8 functions)"] += 1
    try:
        run = CALLS_WITH_IDS[call]
        what = "step_id" if call == "update_step" else "job_id"
        problem = id_problem(value)
        if call == "show_detail" and isinstance(value, str):  # a job name, not an id
            problem, what = name_problem(value), "job name"
        if problem:
            refused(db, empty.schema, lambda: run(empty, value, work), what, problem)
        elif call == "show_detail":
            assert empty.show_detail(value) == []
        else:
            missing = StepNotFoundError if call == "update_step" else JobNotFoundError
            refused(db, empty.schema, lambda: run(empty, value, work), str(value), error=missing)
    finally:
        work.rollback()


@fuzz(100)
@given(
    level=st.one_of(
        st.integers(min_value=-3, max_value=8),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([MAX_INT, MAX_INT + 1]),
        st.booleans(),
        st.floats(),
        st.none(),
        st.text(max_size=2),
    )
)
@example(level=True)
@example(level=3.0)
@example(level=MAX_INT + 1)
@example(level=7)
def test_fail_job_level(fz, db, level):
    TRIED["fail_job(level)"] += 1
    job_id = fz.add_job("fuzz level")
    if isinstance(level, bool) or not isinstance(level, int):
        refused(db, fz.schema, lambda: fz.fail_job(job_id, level), "level must be an int")
    elif not 1 <= level <= MAX_INT:
        refused(db, fz.schema, lambda: fz.fail_job(job_id, level), "level must be a positive")
    elif level > 3:
        refused(
            db, fz.schema, lambda: fz.fail_job(job_id, level), "has no text", error=StatusTextError
        )
    else:
        fz.fail_job(job_id, level)
        (job,) = [j for j in fz.show_job("fuzz level", 1) if j.job_id == job_id]
        assert job.status == {1: "OK", 2: "WARNING", 3: "CRITICAL"}[level]


ODD_TABLE = 'odd "status"; table ü'


@pytest.fixture(scope="module")
def status_tables(fz: Jobmon, db: psycopg.Connection) -> None:
    db.execute(
        sql.SQL("CREATE TABLE {} (alert_code int, alert_text text)").format(
            sql.Identifier(fz.schema, ODD_TABLE)
        )
    )
    db.execute(
        sql.SQL("INSERT INTO {} VALUES (1, 'FINE'), (3, 'BAD')").format(
            sql.Identifier(fz.schema, ODD_TABLE)
        )
    )
    db.execute(sql.SQL("CREATE TABLE {} (code int)").format(sql.Identifier(fz.schema, "no_text")))


@fuzz(100)
@given(
    table_name=st.one_of(
        any_text,
        wrong_type,
        st.sampled_from([ODD_TABLE, "no_text", "job_log", "job_status_text", "x" * 64, "é" * 32]),
    ),
    how=st.sampled_from(["close_job", "fail_job", "cancel_job"]),
)
@example(table_name=ODD_TABLE, how="close_job")
@example(table_name=ODD_TABLE, how="cancel_job")
@example(table_name="job_log", how="fail_job")
def test_status_table(fz, db, status_tables, table_name, how):
    TRIED["close_job/fail_job/cancel_job(status_table)"] += 1
    job_id = fz.add_job("fuzz status table")  # its pid is the logging session's: never signalled
    finish = {
        "close_job": lambda: fz.close_job(job_id, status_table=table_name),
        "fail_job": lambda: fz.fail_job(job_id, 3, status_table=table_name),
        "cancel_job": lambda: fz.cancel_job(job_id, status_table=table_name),
    }[how]
    problem = None if table_name is None else identifier_problem(table_name)
    if problem:
        refused(db, fz.schema, finish, "status_table", problem)
    elif table_name in (ODD_TABLE, "job_status_text", None):
        assert finish() in (None, False)  # cancel_job: no backend was signalled
        (job,) = [j for j in fz.show_job("fuzz status table", 1) if j.job_id == job_id]
        texts = {ODD_TABLE: ("FINE", "BAD"), "job_status_text": ("OK", "CRITICAL")}
        assert job.status == texts[table_name or "job_status_text"][how != "close_job"]
    else:
        refused(db, fz.schema, finish, "status_table", error=StatusTableError)


@fuzz(100)
@given(
    name=st.one_of(any_text, st.sampled_from(["nightly load"])),
    run_key=st.one_of(any_text, wrong_type),
    step_key=st.one_of(any_text, wrong_type),
)
@example(name="n", run_key="", step_key="k")
@example(name="n", run_key="k", step_key="\x00")
@example(name="n", run_key="é" * 401, step_key="k")
def test_run_and_step_keys(fz, db, name, run_key, step_key):
    TRIED["add_job(run_key)/add_step(step_key)"] += 1
    problem = name_problem(name) or text_problem(
        run_key, none=True, empty=False, max_bytes=MAX_KEY_BYTES
    )
    if problem:
        refused(db, fz.schema, lambda: fz.add_job(name, run_key=run_key), problem)
        return
    job_id = fz.add_job(name, run_key=run_key)
    if run_key is not None:  # the same key, the same job
        assert fz.add_job(name, run_key=run_key) == job_id
        stored = db.execute(
            sql.SQL("SELECT run_key FROM {} WHERE job_id = %s").format(
                sql.Identifier(fz.schema, "job_log")
            ),
            [job_id],
        ).fetchone()
        assert stored == (run_key,)  # (an earlier example may have made the job of this key)
    problem = text_problem(step_key, none=True, empty=False, max_bytes=MAX_KEY_BYTES)
    if problem:
        refused(db, fz.schema, lambda: fz.add_step(job_id, "a", step_key=step_key), "step_key")
        return
    step_id = fz.add_step(job_id, "a", step_key=step_key)
    if step_key is not None:
        assert fz.add_step(job_id, "b", step_key=step_key) == step_id
        (step,) = [s for s in fz.show_detail(job_id) if s.step_id == step_id]
        assert (step.step_key, step.action) == (step_key, "a")


@fuzz(12)
@given(size=st.sampled_from([2**20, 10 * 2**20]), chunk=texts(1, 20))
def test_huge_messages_and_actions(fz, db, size, chunk):
    """1 MB and 10 MB messages, statuses and actions: stored and read back byte for byte; a
    1 MB job name is refused (it is indexed)."""
    TRIED["huge message/status/action (1-10 MB)"] += 1
    text = (chunk * (size // len(chunk) + 1))[:size]
    job_id = fz.add_job("fuzz huge")
    try:
        problem = text_problem(text)
        if problem:
            refused(db, fz.schema, lambda: fz.add_step(job_id, text), "action", problem)
            return
        step_id = fz.add_step(job_id, text)
        fz.update_step(step_id, text[: 2**20], text)
        (step,) = fz.show_detail(job_id)
        assert step.action == text
        assert step.status == text[: 2**20]
        assert step.message == text
        digest = db.execute(
            sql.SQL("SELECT md5(message) FROM {} WHERE step_id = %s").format(
                sql.Identifier(fz.schema, "job_detail")
            ),
            [step_id],
        ).fetchone()[0]
        assert digest == hashlib.md5(text.encode()).hexdigest()
        refused(db, fz.schema, lambda: fz.add_job(text), "job name", name_problem(text))
    finally:
        db.execute(
            sql.SQL("DELETE FROM {} WHERE job_id = %s").format(
                sql.Identifier(fz.schema, "job_log")
            ),
            [job_id],
        )


# -- sql_step / sql_job -----------------------------------------------------------------------

queries = st.one_of(
    st.just("SELECT %s::text"),
    st.builds(lambda t: "SELECT " + t, hostile_text),
    st.builds(lambda t: "SELECT '" + t.replace("'", "''") + "'", hostile_text),
    st.builds(lambda t: t.encode("utf-8", "surrogatepass"), hostile_text),
    st.builds(lambda t: sql.SQL("SELECT {}").format(sql.Literal(t)), hostile_text),
    st.sampled_from(
        ["", "SELECT 1; SELECT 2", "SELECT 1/0", "SELECT 1\x00; garbage", b"SELECT 1\x00"]
    ),
    wrong_type,
)
params = st.one_of(
    st.none(),
    st.lists(hostile_text, min_size=1, max_size=1),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["x", "name"]), hostile_text, max_size=1),
    st.integers(),
    hostile_text,
)


def query_problem(query: object) -> str | None:
    if isinstance(query, sql.Composable):
        return None  # checked after composing; the literal's text is the hostile part
    if not isinstance(query, str | bytes):
        return "sql must be a str, bytes or psycopg.sql object"
    if "\x00" in query if isinstance(query, str) else b"\x00" in query:
        return "NUL"
    if isinstance(query, str):
        return text_problem(query)
    return None


def assert_work_usable(work: psycopg.Connection) -> None:
    """The caller's transaction goes on, and no savepoint of ours was left behind."""
    assert work.info.transaction_status != psycopg.pq.TransactionStatus.INERROR
    assert work.execute("SELECT 42").fetchone() == (42,)
    with pytest.raises(psycopg.errors.InvalidSavepointSpecification):
        work.execute("RELEASE SAVEPOINT pg_jobmon_sql")


@fuzz(120)
@given(query=queries, args=params)
@example(query="SELECT %s::text", args=["\udcff"])
@example(query="SELECT %s::text", args=5)
@example(query=None, args=None)
@example(query="DELETE FROM t\x00 WHERE false", args=None)
def test_sql_step(fz, db, work, open_job, query, args):
    TRIED["sql_step(sql, params)"] += 1
    try:
        problem = query_problem(query)
        if problem:
            refused(
                db, fz.schema, lambda: fz.sql_step(open_job, "q", query, args, conn=work), problem
            )
            return
        before = len(fz.show_detail(open_job))
        ok, error = attempt(lambda: fz.sql_step(open_job, "q", query, args, conn=work))
        if error is not None:  # only a psycopg.sql literal that cannot be composed
            assert isinstance(query, sql.Composable), error
            assert isinstance(error, InvalidArgumentError)
            assert "sql cannot be composed" in str(error)
            assert len(fz.show_detail(open_job)) == before
            return
        steps = fz.show_detail(open_job)
        assert len(steps) == before + 1
        step = steps[-1]
        assert step.action == "q"
        assert step.end_time is not None  # never left open
        if ok:
            assert (step.status, step.message[:15]) == ("OK", "Rows affected: ")
        else:
            assert step.status == "CRITICAL"
            assert step.message.startswith("ERROR: ")
        assert_work_usable(work)
    finally:
        work.rollback()


@fuzz(50)
@given(name=st.one_of(any_text, wrong_type), query=queries, args=params)
@example(name="j", query="SELECT '\udcff'", args=None)
@example(name="j", query=None, args=None)
def test_sql_job(fz, db, work, name, query, args):
    TRIED["sql_job(name, sql, params)"] += 1
    try:
        problem = name_problem(name) or query_problem(query)
        if problem:
            refused(db, fz.schema, lambda: fz.sql_job(name, query, args, conn=work), problem)
            return
        before = snapshot(db, fz.schema)
        result, error = attempt(lambda: fz.sql_job(name, query, args, conn=work))
        if error is not None:  # only a psycopg.sql literal that cannot be composed
            assert isinstance(query, sql.Composable), error
            assert "sql cannot be composed" in str(error)
            assert snapshot(db, fz.schema) == before
            return
        job_id = int(re.search(r"\d+", result)[0])
        assert result in (
            f"Job logged with job id: {job_id}",
            f"Job ID {job_id} failed. See job_detail table for more details",
        )
        (job,) = [j for j in fz.show_job(name) if j.job_id == job_id]
        assert job.end_time is not None
        assert job.status == ("OK" if result.startswith("Job logged") else "CRITICAL")
        assert all(s.end_time is not None for s in fz.show_detail(job_id))
        assert_work_usable(work)
    finally:
        work.rollback()


@pytest.fixture(scope="module")
def closed_conn(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn)
    conn.close()
    return conn


@fuzz(40)
@given(
    conn=st.one_of(wrong_type.filter(lambda c: c is not None), st.just("closed")),
    call=st.sampled_from(["add_job", "sql_step", "sql_job", "job"]),
)
def test_work_connection_argument(fz, db, open_job, closed_conn, conn, call):
    TRIED["conn= of add_job/sql_step/sql_job/job"] += 1
    conn = closed_conn if conn == "closed" else conn
    run = {
        "add_job": lambda: fz.add_job("fuzz conn", conn=conn),
        "sql_step": lambda: fz.sql_step(open_job, "q", "SELECT 1", conn=conn),
        "sql_job": lambda: fz.sql_job("fuzz conn", "SELECT 1", conn=conn),
        "job": lambda: fz.job("fuzz conn", conn=conn),
    }[call]
    problem = "conn is closed" if conn is closed_conn else "conn must be an open psycopg.Connection"
    refused(db, fz.schema, run, problem)


@pytest.fixture(scope="module")
def buffered(dsn: str, fz: Jobmon) -> Iterator[Jobmon]:
    jm = Jobmon(dsn, schema=fz.schema, buffered=True, flush_interval=60, max_buffer=10_000)
    yield jm
    jm.close()


@fuzz(60)
@given(action=text_or_junk, status=text_or_junk, message=st.one_of(st.none(), text_or_junk))
@example(action="a\x00", status="OK", message=None)
@example(action="a", status="OK", message="\udcff")
def test_buffered_steps(buffered, db, open_job, action, status, message):
    """The buffered writer: the same checks before anything is queued, and what it writes
    in its batches reads back identical."""
    TRIED["buffered add_step/update_step(action, status, message)"] += 1
    problem = text_problem(action)
    if problem:
        refused(
            db,
            buffered.schema,
            lambda: (buffered.add_step(open_job, action), buffered.flush()),
            "action",
            problem,
        )
        return
    step_id = buffered.add_step(open_job, action)
    problem = text_problem(status) or text_problem(message, none=True)
    if problem:
        buffered.flush()
        refused(
            db,
            buffered.schema,
            lambda: (buffered.update_step(step_id, status, message), buffered.flush()),
            problem,
        )
        return
    buffered.update_step(step_id, status, message)
    assert buffered.flush() == 1
    (step,) = [s for s in buffered.show_detail(open_job) if s.step_id == step_id]
    assert (step.action, step.status, step.message) == (action, status, message)


@fuzz(60)
@given(
    writer=st.one_of(st.none(), any_text, wrong_type),
    monitor=st.one_of(st.none(), any_text),
    admin=st.one_of(st.none(), any_text, st.sampled_from(["public", "pg_x", "a\nb", "%"])),
)
def test_role_names(fz, db, writer, monitor, admin):
    """The GRANT script for any role names: refused with a clear error, or every name
    quoted as an identifier (nothing is sent to the database)."""
    TRIED["grant_statements/roles_script(writer, monitor, admin)"] += 1
    script, error = attempt(lambda: fz.roles_script(writer, monitor, admin))
    if error is not None:
        assert isinstance(error, InvalidArgumentError)
        assert any(w in str(error) for w in ("writer", "monitor", "admin", "role")), error
        return
    statements = fz.grant_statements(writer, monitor, admin)
    assert all(isinstance(s.as_string(db), str) for s in statements)
    for name in (writer, monitor, admin):
        if name is not None:
            assert sql.Identifier(name).as_string(db) in script


# -- the context managers ---------------------------------------------------------------------


@fuzz(80)
@given(
    name=text_or_junk,
    action=text_or_junk,
    status=text_or_junk,
    message=st.one_of(st.none(), any_text),
    raised=st.one_of(st.none(), hostile_text),
)
@example(name="j", action="a", status="OK", message=None, raised="bad \udcff file \x00 name")
@example(name="j", action="a", status="OK", message="a\x00b", raised=None)
def test_job_and_step_context_managers(fz, db, name, action, status, message, raised):
    TRIED["jm.job()/job.step() (name, action, status, message, exception)"] += 1
    if name_problem(name):
        refused(db, fz.schema, lambda: fz.job(name), "job name", name_problem(name))
        return
    job = fz.job(name)
    escaped: ValueError | None = None
    try:
        with job, job.step(action) as step:
            step.status = status
            step.message = message
            if raised is not None:
                raise ValueError(raised)
    except ValueError as exc:
        escaped = exc
    bad_input = text_problem(action) or text_problem(status) or text_problem(message, none=True)
    if raised is None and not bad_input:
        assert escaped is None
    else:
        assert escaped is not None
        assert isinstance(escaped, InvalidArgumentError) == (
            raised is None or bool(text_problem(action))
        )
        assert not getattr(escaped, "__notes__", None)  # its logging did not fail
    assert job.job_id is not None
    (record,) = [j for j in fz.show_job(name) if j.job_id == job.job_id]
    steps = fz.show_detail(job.job_id)
    assert record.end_time is not None  # the job is always finished...
    assert all(s.end_time is not None for s in steps)  # ...and no step is left open
    if text_problem(action):
        assert record.status == "CRITICAL"
        assert [s.action for s in steps] == ["EXCEPTION before first step logged"]
    elif raised is not None:
        assert record.status == "CRITICAL"
        assert (steps[0].action, steps[0].status) == (action, "CRITICAL")
        described = f"ValueError: {raised.strip()}" if raised.strip() else "ValueError"
        expected = described.replace("\x00", "\\x00")
        assert steps[0].message == expected.encode("utf-8", "backslashreplace").decode()
    elif text_problem(status) or text_problem(message, none=True):
        assert record.status == "CRITICAL"
        assert steps[0].status == "CRITICAL"
        assert steps[0].message.startswith("InvalidArgumentError: ")
    else:
        assert record.status == "OK"
        assert [(s.action, s.status, s.message) for s in steps] == [(action, status, message)]


# -- the checker ------------------------------------------------------------------------------


@fuzz(150)
@given(
    name=st.one_of(any_text, wrong_type),
    warn=durations,
    error=durations,
    sensitivity=st.one_of(counts, st.integers(-1, 40000)),
    escalate=st.one_of(st.none(), counts),
    active=st.one_of(st.booleans(), wrong_type),
)
@example(name="x", warn=MAX_DURATION, error=MAX_DURATION, sensitivity=0, escalate=None, active=True)
@example(name="x", warn=timedelta.max, error=timedelta.max, sensitivity=0, escalate=1, active=True)
@example(
    name="x",
    warn=timedelta(1),
    error=timedelta(2),
    sensitivity=0,
    escalate=MAX_INT + 1,
    active=True,
)
def test_configure_check(fz, db, name, warn, error, sensitivity, escalate, active):
    TRIED["configure_check(name, warn, error, sensitivity, escalate, active)"] += 1

    def configure() -> CheckConfig:
        return fz.configure_check(
            name, warn=warn, error=error, sensitivity=sensitivity, escalate=escalate, active=active
        )

    problem = name_problem(name)
    for value in (warn, error):
        if problem is None and value is None:
            problem = "threshold is required"
        problem = problem or duration_problem(value)
        if problem is None and value == timedelta(0):
            problem = "longer than zero"
    if problem is None and error < warn:
        problem = "must not be shorter than warn"
    if problem is None and (isinstance(sensitivity, bool) or not isinstance(sensitivity, int)):
        problem = "sensitivity must be an int"
    if problem is None and not 0 <= sensitivity <= 32767:
        problem = "sensitivity must be 0..32767"
    if (
        problem is None
        and escalate is not None
        and (
            isinstance(escalate, bool)
            or not isinstance(escalate, int)
            or not 1 <= escalate <= MAX_INT
        )
    ):
        problem = "escalate must be None or an int"
    if problem is None and not isinstance(active, bool):
        problem = "active must be True or False"
    if problem:
        refused(db, fz.schema, configure, problem)
        return
    saved = configure()
    expected = CheckConfig(db_upper(db, name), warn, error, active, sensitivity, escalate)
    try:
        assert saved == expected
        assert expected in fz.list_checks()
        # a stored threshold must never break the checks that read it
        assert all(isinstance(a, Alert) for a in fz.check_job_status())
        assert isinstance(fz.check_summary(), Alert)
    finally:
        assert fz.remove_check(name) is True
    assert expected not in fz.list_checks()


@fuzz(100)
@given(history=st.one_of(durations, st.none()), summary=st.booleans())
@example(history=timedelta.max, summary=False)
@example(history=MAX_DURATION, summary=True)
def test_check_history(fz, db, history, summary):
    TRIED["check_job_status/check_summary(history)"] += 1
    call = fz.check_summary if summary else fz.check_job_status
    problem = None if history is None else duration_problem(history)
    if problem:
        refused(db, fz.schema, lambda: call(history), "history", problem)
        return
    result, error = attempt(lambda: call(history))
    if error is not None:  # only a window shorter than the longest active threshold
        assert isinstance(error, CheckHistoryError), error
        assert "longest threshold" in str(error)
        return
    assert all(isinstance(a, Alert) for a in ([result] if summary else result))


@fuzz(30)
@given(history=st.one_of(durations, st.none()), name=text_or_junk)
def test_async_checks(fz, history, name):
    TRIED["aio.check_job_status/aio.run_state"] += 1
    problem = None if history is None else duration_problem(history)
    if problem:
        with pytest.raises(InvalidArgumentError, match="history"):
            asyncio.run(aio.check_job_status(fz.target, fz.schema, history))
    else:
        alerts = asyncio.run(aio.check_job_status(fz.target, fz.schema, history))
        assert all(isinstance(a, Alert) for a in alerts)
    moment = datetime(2000, 1, 1, tzinfo=UTC)
    if name_problem(name):
        with pytest.raises(InvalidArgumentError, match="job name"):
            asyncio.run(aio.run_state(fz.target, fz.schema, name, moment))
    else:
        state = asyncio.run(aio.run_state(fz.target, fz.schema, name, moment))
        assert state.state in ("waiting", "running", "succeeded", "failed")


moments = st.one_of(
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=59))]
        )
    ),
    st.datetimes(),
    st.sampled_from(["2024-01-01T00:00:00+00:00", 0, None, datetime.now(UTC).date()]),
)


@fuzz(80)
@given(name=st.one_of(any_text, wrong_type), since=moments)
def test_run_state(fz, db, name, since):
    TRIED["run_state(job_name, since)"] += 1
    problem = name_problem(name)
    if problem is None and (not isinstance(since, datetime) or since.tzinfo is None):
        problem = "since must be a timezone-aware datetime"
    if problem:
        refused(db, fz.schema, lambda: fz.run_state(name, since), problem)
        return
    state = fz.run_state(name, since)
    assert isinstance(state, RunState)
    assert state.state in ("waiting", "running", "succeeded", "failed")


# -- reports and retention --------------------------------------------------------------------


@fuzz(150)
@given(
    report=st.sampled_from(
        ["show_job", "show_job_like", "show_job_status", "show_detail", "show_running"]
    ),
    text=st.one_of(
        any_text, wrong_type, st.sampled_from(["FUZZ", ".", "(", "[[:alpha:]]+", "a{2,1}"])
    ),
    name=st.one_of(st.none(), any_text),
    limit=counts,
)
@example(report="show_job_like", text="(", name=None, limit=1)
@example(report="show_job", text="fuzz level", name=None, limit=2**63)
def test_reports(fz, db, report, text, name, limit):
    TRIED["show_* (name/pattern/status, limit, name)"] += 1
    count_what = "jobs" if report == "show_detail" else "limit"
    if report == "show_running":
        problems = [count_problem(limit)]
    elif report == "show_job_status":
        problems = [text_problem(text, empty=False), count_problem(limit)]
        problems.append(None if name is None else name_problem(name))
    elif report == "show_job_like":
        problems = [text_problem(text, empty=False), count_problem(limit)]
    elif report == "show_detail" and not isinstance(text, str):
        problems = [id_problem(text)]  # by job id: ``jobs`` does not apply
    else:  # show_job, show_detail by name
        problems = [name_problem(text), count_problem(limit)]
    calls = {
        "show_running": lambda: fz.show_running(limit),
        "show_job_status": lambda: fz.show_job_status(text, limit, name=name),
        "show_job_like": lambda: fz.show_job_like(text, limit),
        "show_detail": lambda: fz.show_detail(text, limit),
        "show_job": lambda: fz.show_job(text, limit),
    }
    problem = next((p for p in problems if p), None)
    if problem:
        fragments = [problem]
        if problem in ("must be a positive int", "must be at most"):
            fragments.append(count_what)
        refused(db, fz.schema, calls[report], *fragments)
        return
    found, error = attempt(calls[report])
    if error is not None:  # only a pattern: the database decides what a valid regex is
        assert report == "show_job_like", error
        assert isinstance(error, InvalidArgumentError)
        assert "not a valid POSIX regular expression" in str(error)
        return
    record = StepRecord if report == "show_detail" else JobRecord
    assert all(isinstance(r, record) for r in found)
    if report != "show_detail":
        assert len(found) <= limit
    if report == "show_job":
        assert {r.job_name for r in found} <= {db_upper(db, text)}


@pytest.fixture(scope="module")
def clear_jm(dsn: str) -> Iterator[Jobmon]:
    with installed(dsn) as jm:
        yield jm


@fuzz(30)
@given(older_than=durations, batch_size=st.one_of(counts, st.sampled_from([1, 2, 10_000])))
@example(older_than=timedelta(0), batch_size=1)
@example(older_than=timedelta.max, batch_size=1)
def test_job_log_clear(clear_jm, db, older_than, batch_size):
    TRIED["job_log_clear(older_than, batch_size)"] += 1
    for _ in range(2):
        clear_jm.close_job(clear_jm.add_job("fuzz clear"))
    problem = duration_problem(older_than)
    if problem == "must not be negative":
        problem = "older_than must be a datetime.timedelta of zero or more"
    problem = problem or count_problem(batch_size)
    if problem:
        refused(
            db,
            clear_jm.schema,
            lambda: clear_jm.job_log_clear(older_than, batch_size=batch_size),
            problem,
        )
        return
    deleted = clear_jm.job_log_clear(older_than, batch_size=batch_size)
    assert isinstance(deleted, int)
    assert deleted >= 0
    purge = clear_jm.show_job_like("^PURGING PG_JOBMON JOB LOGS", 1)[0]
    assert purge.status == "OK"
    (step,) = clear_jm.show_detail(purge.job_id)
    if deleted:
        assert (
            step.message == f"Deleted {deleted} rows from job_log and associated rows in job_detail"
        )
    else:
        assert step.message.startswith("No jobs logged older than ")


# -- constructor and schema names -------------------------------------------------------------


timeouts = st.one_of(
    st.none(),
    st.floats(),
    st.integers(-5, 10**7),
    st.timedeltas(),
    st.booleans(),
    st.sampled_from(["5s", b"5"]),
)


@fuzz(250)
@given(
    schema=st.one_of(any_text, wrong_type),
    application_name=st.one_of(any_text, wrong_type),
    connect_timeout=counts,
    dsn=st.one_of(
        st.none(), hostile_text, st.sampled_from(["host=", "postgresql://", "a=b", "'", "host='x"])
    ),
    lock_timeout=timeouts,
    statement_timeout=timeouts,
    prepare=st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, "yes"])),
    buffered=st.booleans(),
    flush_interval=st.one_of(
        st.floats(), st.integers(-2, 5000), st.booleans(), st.none(), st.sampled_from([0.2, 3600])
    ),
    max_buffer=counts,
)
@example(
    schema="s", application_name="a", connect_timeout=1, dsn="host=a\x00b", lock_timeout=None,
    statement_timeout=None, prepare=None, buffered=True, flush_interval=0.2, max_buffer=1,
)  # fmt: skip
@example(
    schema="s", application_name="a", connect_timeout=1, dsn="host=a", lock_timeout=None,
    statement_timeout=None, prepare=None, buffered=True, flush_interval=float("inf"), max_buffer=1,
)  # fmt: skip
def test_constructor(**kwargs):
    """Nothing connects in the constructor: bad arguments are refused at once, good ones give
    a Jobmon (a connection string that is not libpq syntax is refused, never echoed)."""
    TRIED["Jobmon(dsn, schema, application_name, *_timeout, prepare, buffered...)"] += 1
    schema, dsn = kwargs["schema"], kwargs["dsn"]
    problem = identifier_problem(schema)
    problem = problem or text_problem(kwargs["application_name"])
    connect_timeout = kwargs["connect_timeout"]
    if problem is None and (
        isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int)
    ):
        problem = "connect_timeout must be an int"
    if problem is None and connect_timeout < 1:
        problem = "at least 1 second"
    if problem:
        with pytest.raises(InvalidArgumentError, match=re.escape(problem)):
            Jobmon(**kwargs)
        return
    # Then: the connection string (its syntax is libpq's to judge), the time-outs and
    # prepare (all may be refused), and the buffer's arguments (exactly these are wrong).
    must_refuse = set()
    if isinstance(dsn, str) and text_problem(dsn):
        must_refuse.add("connection string")
    flush, most = kwargs["flush_interval"], kwargs["max_buffer"]
    if kwargs["buffered"]:
        if isinstance(flush, bool) or not isinstance(flush, int | float) or not 0 < flush <= 3600:
            must_refuse.add("flush_interval")
        if isinstance(most, bool) or not isinstance(most, int) or most < 1:
            must_refuse.add("max_buffer")
    may_refuse = {"connection string", "lock_timeout", "statement_timeout", "prepare"}
    jm, error = attempt(lambda: Jobmon(**kwargs))
    if error is not None:
        assert isinstance(error, InvalidArgumentError)
        assert any(word in str(error) for word in must_refuse | may_refuse), error
        if isinstance(dsn, str) and len(dsn) > 3:
            assert dsn not in str(error)  # it may hold a password
        return
    assert not must_refuse
    assert jm.schema == schema
    jm.close()


@fuzz(10)
@given(
    schema=st.one_of(
        texts(1, 20),
        st.sampled_from(['a"b', "a;b --", "Mixed Case", "ü€𝄞", " ", "x" * 63, "é" * 31 + "x", "%"]),
    )
)
@example(schema='jobmon"; DROP SCHEMA public; --')
def test_any_schema_name(dsn, db, schema):
    """Any schema name PostgreSQL accepts works, quotes and all, and is the exact name."""
    TRIED["install() and the API in schema <name>"] += 1
    problem = identifier_problem(schema)
    if problem:
        with pytest.raises(InvalidArgumentError, match="schema"):
            Jobmon(dsn, schema=schema)
        return
    exists = db.execute("SELECT true FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    if exists or schema.startswith("pg_"):
        return  # not ours to install into (and pg_ is reserved by PostgreSQL)
    with installed(dsn, schema) as jm:
        assert db.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]
        ).fetchone() == (1,)
        job_id = jm.add_job(schema)
        step_id = jm.add_step(job_id, schema)
        jm.update_step(step_id, "OK", schema)
        jm.fail_job(job_id)
        assert [(s.action, s.message) for s in jm.show_detail(job_id)] == [(schema, schema)]
        assert jm.show_job(schema)[0].status == "CRITICAL"
        assert all(isinstance(a, Alert) for a in jm.check_job_status())
        assert jm.schema_version() >= 4


def test_reserved_schema_prefix_is_a_clear_error(dsn, db):
    TRIED["install() into pg_*"] += 1
    with pytest.raises(JobmonError, match='prefix "pg_" is reserved'):
        Jobmon(dsn, schema="pg_fuzz").install()
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'pg_fuzz'").fetchone() == (
        0,
    )


# -- durations and output (no database) -------------------------------------------------------

duration_texts = st.one_of(
    st.text(max_size=20),
    st.text(st.sampled_from(list("0123456789. dhmswinkeorcuty٣²-+e")), max_size=20),
    st.builds(
        lambda n, u: f"{n}{u}",
        st.one_of(st.integers(0, 10**30), st.floats(0, 1e30).map(lambda f: f"{f:.3f}")),
        st.sampled_from(["s", "m", "h", "d", "w", " days", " fortnight", " weeks", ""]),
    ),
    st.sampled_from(
        ["1 fortnight", "P1D", "PT1H", "1e3s", "-1d", "inf d", "nan s", "99999999999999d"]
    ),
)


@fuzz(400)
@given(value=st.one_of(duration_texts, wrong_type))
@example(value="99999999999999d")
@example(value="1" * 400 + "w")
@example(value="365250d")
def test_parse_duration(value):
    TRIED["parse_duration(text)"] += 1
    parsed, error = attempt(lambda: parse_duration(value))
    if error is not None:
        assert isinstance(error, InvalidArgumentError)
        assert "duration" in str(error)
        return
    assert isinstance(value, str)
    assert timedelta(0) <= parsed <= MAX_DURATION


@fuzz(200)
@given(value=st.one_of(st.none(), st.timedeltas(), st.floats()))
@example(value=float("nan"))
@example(value=float("-inf"))
@example(value=timedelta.min)
def test_format_duration(value):
    TRIED["format_duration(value)"] += 1
    shown = format_duration(value)
    assert isinstance(shown, str)
    assert "\n" not in shown


alert_texts = st.one_of(st.none(), hostile_text)


@fuzz(200)
@given(
    alerts=st.lists(
        st.builds(
            Alert,
            alert_code=st.integers(1, 9),
            alert_status=alert_texts,
            job_name=alert_texts,
            alert_text=hostile_text,
        ),
        max_size=4,
    )
)
@example(alerts=[Alert(3, "FAILED_RUN", "A|B\nC", "1 CRITICAL run(s)|'x'=1")])
def test_nagios_output_keeps_its_shape(alerts):
    """Whatever the job names and texts hold, the plugin output is one line per problem,
    the first one the state, and one ``|`` (the perfdata)."""
    TRIED["nagios.render(alerts)/nagios.unknown(reason)/text.table(rows)"] += 1
    output, code = nagios.render(alerts, 0.001)
    problems = [a for a in alerts if not a.is_ok]
    lines = output.split("\n")
    assert len(lines) == 1 + len(problems)
    assert lines[0].startswith(f"JOBMON {nagios.STATE_NAMES[code]} - ")
    assert output.count("|") == 1
    assert lines[-1].split(" | ")[-1].startswith("'critical'=")
    output.encode("utf-8")  # printable on a UTF-8 terminal
    unknown, unknown_code = nagios.unknown(alerts[0].alert_text if alerts else "")
    assert (unknown.count("\n"), unknown.count("|"), unknown_code) == (0, 0, 3)
    rows = [(a.alert_code, a.alert_status, a.job_name, a.alert_text) for a in alerts]
    assert len(table(["code", "status", "job", "text"], rows).split("\n")) == 2 + len(alerts)


# -- the jobmon command -----------------------------------------------------------------------

cli_values = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), max_size=12),
    st.sampled_from(
        [
            "", " ", "-1", "0", "1", "2", "10", "3d", "1h30m", "99999999999999d", "1 fortnight",
            "²", "٣", "1e3", "nan", "99999999999999999999", "json", "nagios", "'", "(", "%s",
            "a|b", "x\ny", "\udcff", "é" * 70, "--", "-", "FUZZ", "nightly load",
        ]
    ),
)  # fmt: skip
durations_cli = st.one_of(cli_values, st.sampled_from(["1s", "25h", "49h", "365250d", "0s"]))


@st.composite
def cli_commands(draw: st.DrawFn, in_process: bool) -> list[str]:
    """``jobmon`` argument lists: each subcommand with fuzzed values, or fuzzed words."""
    v = draw
    kind = v(st.sampled_from(["check", "jobs", "steps", "config set", "config remove",
                              "config list", "clear", "version", "install", "random"]))  # fmt: skip
    if kind == "check":
        args = ["check"]
        for _ in range(v(st.integers(0, 3))):
            option = v(st.sampled_from(["--history", "--format", "--timeout", "-t"]))
            value = v(durations_cli if option == "--history" else cli_values)
            if in_process and option in ("--timeout", "-t"):
                # a timeout that fires in-process would os._exit() pytest itself
                value = v(st.sampled_from(["0", "-1", "x", "86401", "99999999999999", "600"]))
            args += [option, value]
        if in_process:
            args = ["check", "--timeout", "600", *args[1:]]
    elif kind == "jobs":
        args = ["jobs"]
        for _ in range(v(st.integers(0, 3))):
            option = v(st.sampled_from(["--name", "--like", "--running", "--status", "--limit"]))
            args += [option] if option == "--running" else [option, v(cli_values)]
    elif kind == "steps":
        args = ["steps", v(cli_values), *v(st.sampled_from([[], ["--jobs", v(cli_values)]]))]
    elif kind == "config set":
        args = [
            "config",
            "set",
            v(cli_values),
            "--warn",
            v(durations_cli),
            "--error",
            v(durations_cli),
        ]
        for option in ("--sensitivity", "--escalate"):
            if v(st.booleans()):
                args += [option, v(cli_values)]
        args += v(st.sampled_from([[], ["--inactive"]]))
    elif kind == "config remove":
        args = ["config", "remove", v(cli_values)]
    elif kind == "clear":
        args = ["clear", "--older-than", v(durations_cli)]
        args += v(st.sampled_from([[], ["--batch-size", v(cli_values)]]))
    elif kind == "random":
        args = v(st.lists(cli_values, max_size=4))
        if in_process:
            args = [a for a in args if a != "check"]
    else:
        args = [kind.split()[0]]
    return args


@pytest.fixture(scope="module")
def cli_jm(dsn: str) -> Iterator[Jobmon]:
    with installed(dsn) as jm:
        jm.fail_job(jm.add_job("fuzz cli"))
        yield jm


WRITES = ("config", "clear", "install")


def _asks_for_help(argv: list[str]) -> bool:
    """-h, -V, or an abbreviation argparse expands to --help or --version."""
    return any(
        a in ("-h", "-V") or (len(a) > 2 and ("--help".startswith(a) or "--version".startswith(a)))
        for a in argv
    )


def check_cli_result(argv: list[str], code: int, out: str, err: str, secret: str | None) -> None:
    """The documented exit codes; for ``check`` a plugin's output (never a bare error); for
    the rest, errors on one line of stderr; never a traceback or the password."""
    is_check = "check" in argv
    assert "Traceback" not in err, (argv, err)
    if secret:
        assert secret not in out + err
    if _asks_for_help(argv):
        assert code in (0, 2, 3), (argv, code, err)
        return
    if is_check:
        assert code in (0, 1, 2, 3), (argv, code, out, err)
        assert out.lstrip().startswith(("JOBMON ", "{")), (argv, out, err)
        if out.startswith("JOBMON "):
            assert out.count("|") <= 1, out
    else:
        assert code in (0, 1, 2), (argv, code, out, err)
    if code in (1, 2) and not is_check:
        assert err.startswith("jobmon"), (argv, err)
        assert err.count("\n") <= 2, (argv, err)  # the message, and "(see jobmon --help)"


@fuzz(150)
@given(argv=cli_commands(in_process=True), bad_dsn=st.one_of(st.none(), cli_values))
@example(argv=["steps", "²"], bad_dsn=None)
@example(argv=["jobs", "--name", ""], bad_dsn=None)
@example(argv=["clear", "--older-than", "99999999999999d"], bad_dsn=None)
@example(argv=["jobs", "--name", "\udcff"], bad_dsn=None)
@example(argv=["jobs"], bad_dsn="\udcff")
def test_cli_in_process(dsn, db, cli_jm, argv, bad_dsn):
    """``main(argv)`` as the console script calls it, with fuzzed arguments: only the
    documented exit codes, one-line errors, nothing written by a refused command."""
    TRIED["jobmon CLI in-process (every subcommand and option)"] += 1
    full = ["--dsn", dsn if bad_dsn is None else bad_dsn, "--schema", cli_jm.schema, *argv]
    before = snapshot(db, cli_jm.schema)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(full)
        except SystemExit as exit_:  # argparse's --help and --version
            code = exit_.code
    check_cli_result(full, code, out.getvalue(), err.getvalue(), None)
    if code != 0 or not any(w in argv for w in WRITES):
        assert snapshot(db, cli_jm.schema) == before, (full, code)


def _secret(dsn: str) -> str | None:
    return conninfo_params(dsn).get("password") or None


@fuzz(40)
@given(
    argv=cli_commands(in_process=False), raw=st.one_of(st.none(), st.binary(min_size=1, max_size=6))
)
@example(argv=["check", "--timeout", "99999999999999"], raw=None)
@example(argv=["check"], raw=b"\xff")
@example(argv=["jobs", "--name"], raw=b"\xff\xfe")
def test_cli_subprocess(dsn, db, cli_jm, argv, raw):
    """The real console entry point in a process of its own: bytes that are not UTF-8 in
    argv, and tracebacks or passwords in the output, are what this can catch."""
    TRIED["jobmon CLI subprocess (argv bytes)"] += 1
    args = [os.fsencode(a) for a in argv]
    if raw is not None:
        args.append(raw.replace(b"\x00", b""))
    full = [b"--dsn", dsn.encode(), b"--schema", cli_jm.schema.encode(), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBMON_", "PG"))}
    # strict UTF-8 output, as on a terminal with a UTF-8 locale such as en_US.UTF-8
    env.update(LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8:strict", PYTHONPATH=str(ROOT))
    before = snapshot(db, cli_jm.schema)
    done = subprocess.run(
        [sys.executable, "-m", "jobmon_core.cli", *full],
        capture_output=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )
    out = done.stdout.decode("utf-8", "backslashreplace")
    err = done.stderr.decode("utf-8", "backslashreplace")
    shown = [os.fsdecode(a) for a in full]
    check_cli_result(shown, done.returncode, out, err, _secret(dsn))
    if done.returncode != 0 or not any(w in argv for w in WRITES):
        assert snapshot(db, cli_jm.schema) == before, (shown, done.returncode)
