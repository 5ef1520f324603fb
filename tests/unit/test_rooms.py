"""The rooms hold their own work: the pure decisions import no I/O machinery.

`app/core` is where every decision lives as a pure function (STYLE: decisions are
pure; time and ids are parameters). Importing it must load none of Faust,
aiokafka, psycopg, pydantic-settings or asyncio; a fresh interpreter per module
tells, since this test's own process has loaded all of them already.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

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
