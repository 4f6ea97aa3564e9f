"""No SQL built by string formatting: every statement is a constant or composed with psycopg.sql.

ruff's S608 flags SQL-looking f-strings; this test is stricter and purpose-built: it parses
every module we ship (and the examples, benchmarks and dev tools) and fails on any call to
``execute``/``executemany``/``sql.SQL``/``copy`` whose statement is an f-string, a ``%``- or
``+``-built string, or a ``str.format`` call. Parameters go in ``params``; names go through
``sql.Identifier``; fragments through ``sql.SQL`` built from constants.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [
    "jobmon_core",
    "jobmon_airflow",
    "jobmon_prefect",
    "jobmon_web",
    "dags_examples",
    "flows_examples",
    "devtools",
    "bench",
]
STATEMENT_TAKERS = {"execute", "executemany", "copy", "SQL", "stream"}


def _python_files() -> list[Path]:
    return sorted(p for folder in SHIPPED for p in (ROOT / folder).rglob("*.py"))


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _is_formatted_string(node: ast.expr) -> bool:
    """True for f"...", "..." % x, "..." + x and "...".format(x)."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return _is_stringish(node.left) or _is_stringish(node.right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    ):
        return _is_stringish(node.func.value)
    return False


def _is_stringish(node: ast.expr) -> bool:
    return (
        (isinstance(node, ast.Constant) and isinstance(node.value, str))
        or isinstance(node, ast.JoinedStr)
        or _is_formatted_string(node)
    )


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and _called_name(node) in STATEMENT_TAKERS
            and node.args
            and _is_formatted_string(node.args[0])
        ):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found.append(f"{where}: {_called_name(node)}() gets a string-formatted statement")
    return found


def test_the_scan_covers_the_code_we_ship():
    files = _python_files()
    assert len(files) > 30
    assert ROOT / "jobmon_core" / "writer.py" in files


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("conn.execute(f'SELECT {x}')", True),
        ("conn.execute('SELECT %s' % x)", True),
        ("conn.execute('SELECT ' + x)", True),
        ("conn.execute('SELECT {}'.format(x))", True),
        ("cur.executemany(f'INSERT INTO {t} VALUES (%s)', rows)", True),
        ("sql.SQL(f'SELECT {x}')", True),
        ("conn.execute('SELECT %s', [x])", False),
        ("conn.execute(sql.SQL('SELECT {}').format(sql.Identifier(x)))", False),
        ("conn.execute(QUERY, params)", False),
        ("conn.execute(f'SELECT 1')", False),  # an f-string without fields is a constant
    ],
)
def test_the_scan_knows_formatting_from_composition(source, bad):
    tree = ast.parse(source)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert _is_formatted_string(call.args[0]) is bad


def test_no_statement_is_built_by_string_formatting():
    offences = [o for path in _python_files() for o in _offences(path)]
    assert offences == [], "compose SQL with psycopg.sql:\n" + "\n".join(offences)
