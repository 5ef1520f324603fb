"""`hookstream worker` refuses to start on a Faust its correctness patches were not written for.

The child process finds, ahead of the installed one, a copy of the installed
faust-streaming that calls itself 0.16.0 and whose `Consumer._add_gap` (the code
point 6 replaces) differs: what an unpinned image build could have installed. The
broker and the topics are real, so nothing but the guard stops the worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import faust

REPO = Path(__file__).resolve().parents[2]


def _newer_faust(site: Path) -> None:
    shutil.copytree(Path(faust.__file__).parent, site / "faust", ignore=shutil.ignore_patterns("__pycache__"))
    consumer = site / "faust" / "transport" / "consumer.py"
    source = consumer.read_text()
    marker = "    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:\n"
    assert marker in source
    consumer.write_text(source.replace(marker, marker + "        offset_to = max(offset_to, offset_from)\n"))
    dist = site / "faust_streaming-0.16.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: faust-streaming\nVersion: 0.16.0\n")


def _worker(settings, tmp_path: Path, site: Path | None) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env(), "HOOKSTREAM_WORKER_DATA_DIR": str(tmp_path / "data")}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


async def test_the_worker_refuses_to_start_naming_the_versions(settings, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _newer_faust(site)
    done = _worker(settings, tmp_path, site)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "hookstream: configuration error: the worker will not start" in done.stderr
    assert "faust-streaming 0.16.0, aiokafka 0.14.0" in done.stderr  # installed
    assert "written against faust-streaming 0.15.3, aiokafka 0.14.0" in done.stderr
    assert (
        "point 6 (no offset gap filled: no commit past a record not processed): "
        "faust.transport.consumer:Consumer._add_gap changed" in done.stderr
    )
    # 0.16.0 has no source for the compiled iterator to compare: point 8, a speed patch, only warns
    assert "point 8" not in done.stderr.split("the worker will not start")[1]
