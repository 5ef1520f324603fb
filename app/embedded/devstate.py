"""A running `hookstream dev`'s claim on its data directory, and where other shells find it.

`DevLock(data_dir).acquire()` takes an exclusive `flock` on `DATA_DIR/dev.lock`
for the life of the dev process (the kernel drops it when the process dies,
even by SIGKILL): a second dev on the same directory is refused before it
touches anything, instead of resetting the running one's schema and RocksDB
state.

While it holds the lock, dev writes `DATA_DIR/dev.env` (`HOOKSTREAM_*=value`
lines). Every `hookstream` command reads that file when it is there and its dev
still holds the lock (`running_env_file`): `./.hookstream/dev.env` in the
current directory, or the file named by HOOKSTREAM_DEV_ENV. Variables set in
the environment win over the file.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOCK_NAME = "dev.lock"
ENV_NAME = "dev.env"
DEFAULT_DATA_DIR = Path(".hookstream")


class DataDirInUse(Exception):
    """Another dev holds the directory; the message says which and what to do."""


@dataclass
class DevLock:
    data_dir: Path
    _file: IO[str] | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_NAME

    @property
    def env_path(self) -> Path:
        return self.data_dir / ENV_NAME

    def acquire(self) -> DevLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DataDirInUse(
                f"{self.data_dir} is in use by another `hookstream dev` (pid {holder}): it owns the broker, PostgreSQL "
                f"and worker state there. Stop it (Ctrl-C in its shell), or start this one elsewhere with "
                f"--data-dir (and other ports)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def write_env(self, values: Mapping[str, str]) -> Path:
        """The file other shells read: one `NAME=value` line each, quoted for a POSIX shell too."""
        text = "".join(f"{name}={shlex.quote(value)}\n" for name, value in sorted(values.items()))
        tmp = self.env_path.with_suffix(".tmp")
        tmp.write_text("# written by `hookstream dev` while it runs; removed when it stops\n" + text, encoding="utf-8")
        tmp.chmod(0o600)  # it holds the events token
        tmp.replace(self.env_path)
        return self.env_path

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is None:
            return
        self.env_path.unlink(missing_ok=True)
        handle.close()  # drops the lock


def is_held(lock_path: Path) -> bool:
    """True while some process holds the dev lock at `lock_path`."""
    try:
        handle = open(lock_path, encoding="utf-8")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def running_env_file(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The env file of a running dev: HOOKSTREAM_DEV_ENV, else ./.hookstream/dev.env; None when
    there is none or its dev stopped (a file left by a killed dev is ignored)."""
    environ = os.environ if environ is None else environ
    named = environ.get("HOOKSTREAM_DEV_ENV")
    path = Path(named) if named else (cwd or Path.cwd()) / DEFAULT_DATA_DIR / ENV_NAME
    if not path.is_file() or not is_held(path.with_name(LOCK_NAME)):
        return None
    return path
