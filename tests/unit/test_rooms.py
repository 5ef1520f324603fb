"""The rooms hold their own work: the pure decisions import no I/O machinery.

`app/core` is where every decision lives as a pure function (STYLE: decisions are
pure; time and ids are parameters). Importing it must load none of Faust,
aiokafka, psycopg, pydantic-settings or asyncio; a fresh interpreter per module
tells, since this test's own process has loaded all of them already.
"""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import app
import app.core

FORBIDDEN = ("faust", "aiokafka", "psycopg", "pydantic_settings", "asyncio")


def test_importing_any_core_module_loads_no_io_machinery():
    modules = sorted(f"app.core.{m.name}" for m in pkgutil.iter_modules(app.core.__path__))
    probe = (
        "import importlib, sys, json\n"
        f"out = {{}}\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"    out[name] = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    # One module at a time would be exact about which one pulls a package in; the union is what
    # matters (any of them loading one loads it for all), and one interpreter keeps this fast.
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    import json

    loaded = {name: found for name, found in json.loads(result.stdout).items() if found}
    assert not loaded, f"app.core modules that load I/O machinery: {loaded}"
    assert len(modules) > 15


# -- all SQL lives in app/store ------------------------------------------------------------------

APP = Path(app.__file__).parent
# A string that begins like a statement, or like a piece of one a caller glues on (a WHERE
# clause, an ORDER BY, a condition with a placeholder). Keywords in capitals, as hookstream writes
# SQL: prose that names a statement in a sentence ("drop with: DROP SCHEMA ...") does not begin
# with one, and docstrings are not looked at.
SQL_TEXT = re.compile(
    r"^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\S+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\(|"
    r"(CREATE|DROP|ALTER)\s+(TABLE|SCHEMA|INDEX|VIEW)\s|TRUNCATE\s|LOCK\s+TABLE\s|"
    r"(WHERE|ORDER\s+BY|GROUP\s+BY|ON\s+CONFLICT|RETURNING|LIMIT)\s)"
    r"|^\s*\w+\s*(=|<>|<=|>=|<|>|@>|&&|LIKE|IN)\s*(%s|%\(\w+\)s|ANY\s*\()"
)


def sql_outside_the_store(source: str) -> list[tuple[int, str]]:
    """(line, what) of every SQL text, `execute` call and `psycopg.sql` import in `source`."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if SQL_TEXT.search(node.value):
                found.append((node.lineno, f"SQL text {node.value[:60]!r}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("execute", "executemany"):
                found.append((node.lineno, f".{node.func.attr}(...)"))
        elif isinstance(node, ast.ImportFrom) and node.module in ("psycopg", "psycopg.sql"):
            if node.module == "psycopg.sql" or any(alias.name == "sql" for alias in node.names):
                found.append((node.lineno, "imports psycopg.sql"))
    return found


def test_sql_is_written_only_in_app_store():
    """STYLE: all SQL lives in app/store, in functions named for what they do; everything else calls them."""
    store = APP / "store"
    found = {
        f"{path.relative_to(APP.parent)}:{line}": what
        for path in sorted(APP.rglob("*.py"))
        if store not in path.parents
        for line, what in sql_outside_the_store(path.read_text(encoding="utf-8"))
    }
    assert not found, f"SQL outside app/store (move it into a function of an app/store module): {found}"


@pytest.mark.parametrize(
    "text",
    [
        'q = "SELECT a, b FROM t"',
        'q = "INSERT INTO t (a) VALUES (%s)"',
        'q = "UPDATE t SET a = 1"',
        'q = "DELETE FROM t WHERE a = %s"',
        'q = " WHERE status = %s"',
        'clauses.append("last_failed_at >= %s")',
        'q = f"SELECT {cols} FROM t"',
        "await conn.execute(statement)",
        "from psycopg import sql",
        'DROP = "DROP SCHEMA IF EXISTS x CASCADE"',
    ],
)
def test_the_scan_finds_sql_written_in_every_form_hookstream_uses(text):
    assert sql_outside_the_store(text)


@pytest.mark.parametrize(
    "text",
    [
        'def f():\n    """SELECT the rows FROM the table: a docstring may speak of SQL."""',
        'print("kept (drop with: DROP SCHEMA <name> CASCADE):")',
        'log.info("offset %s of %s", 1, 2)',
        'help_text = "select the jobs where status = failed"',
        'raise CliError("--limit must be positive")',
        "command.execute_from_commandline()",
        "from psycopg import AsyncConnection",
    ],
)
def test_the_scan_leaves_prose_and_other_calls_alone(text):
    assert not sql_outside_the_store(text)
