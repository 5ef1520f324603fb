"""A local git repository through plumbing: `ls-tree`, `diff-tree`, `cat-file --batch`.

Config: `{"path": "/repo", "branch": "main"}` (branch optional: HEAD when absent).

- Head: `refs/heads/<branch>` (or HEAD) as the repository has it now: the
  documents converge on it, whatever commit the push that triggered the job named.
- Full listing: `git ls-tree -r -z --long <commit>`, every blob (files and
  symlinks; a symlink's content is its target, as git stores it). Submodules
  (mode 160000) are commits of another repository: never listed.
- Diff: `git diff-tree -r -z --no-renames <base> <head>`, only when `git
  merge-base --is-ancestor <base> <head>` says the documents' commit is in the
  head's history (otherwise a force push moved the branch, or `base` is not in
  this repository: the listing is full). The raw format gives the new blob ids
  with the statuses, so no second lookup per file; `--no-renames` makes a
  rename a delete plus an add, which is what a document store keyed by path
  needs, and keeps the output independent of rename-detection heuristics.
- Errors name their cause: a missing path, a permission problem, not a
  repository, an empty repository, a missing branch (checked again on every
  failure, never from a cached earlier answer). Those are permanent; a reader
  that keeps dying or a git command killed by a signal is transient
  (`SourceError.transient`): the stages retry it with backoff.
- Content: one `git cat-file --batch` process serves a whole `fetch` call
  (a batch); a writer task feeds ids while the reader reads, so a large
  batch cannot deadlock on full pipes. The processes stay up between fetches,
  up to `SourceOptions.git_readers` of them for concurrent fetches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.events.sync import FileChange
from app.sources.base import Fetched, FileAt, SourceAdapter, SourceError, SourceOptions, TransientSourceError
from app.sources.roots import check_git_path

_OID = re.compile(rb"^[0-9a-f]{40}([0-9a-f]{24})?$")
_GITLINK = b"160000"
_NULL_MODE = b"000000"
# Plumbing must not prompt, page, or read the user's terminal.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_OPTIONAL_LOCKS": "0"}


class GitConfig(BaseModel):
    # Unknown keys are ignored: a git source may carry e.g. the GitHub repository it mirrors.
    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str = Field(min_length=1)
    branch: str | None = None


log = logging.getLogger(__name__)

# Fresh `cat-file --batch` processes one fetch may take after its reader died.
_READER_RESTARTS = 2


class _ReaderDied(Exception):
    """A `cat-file --batch` process ended before answering every id it was asked for."""


def decode_path(raw: bytes) -> str:
    """Paths are bytes in git; non-UTF-8 bytes become `\\xNN`, deterministic and distinct."""
    return raw.decode("utf-8", errors="backslashreplace")


class GitCommandError(SourceError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: bytes) -> None:
        self.returncode = returncode
        # Killed by a signal (an OOM kill, a stray SIGKILL): not the repository's fault, try again.
        self.transient = returncode < 0
        self.stderr = stderr.decode("utf-8", errors="replace").strip()
        super().__init__(f"git {' '.join(args)} failed (exit {returncode}): {self.stderr or 'no message'}")


async def _communicate(proc: asyncio.subprocess.Process, input: bytes | None = None) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of `proc`, once it exited."""
    out, err = await proc.communicate(input)
    return await proc.wait(), out, err  # communicate() waited: wait() only hands over the status


class GitSource(SourceAdapter):
    source_type = "git"
    reads_config_files = True

    def __init__(self, config: dict, options: SourceOptions | None = None) -> None:
        try:
            self.config = GitConfig.model_validate(config)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SourceError(
                f'git source config {".".join(map(str, err["loc"]))}: {err["msg"]} (expected {{"path": "/repo", "branch": optional}})'
            ) from None
        self.options = options or SourceOptions()
        self.path = check_git_path(self.config.path, self.options.git_roots)  # HOOKSTREAM_GIT_ROOTS
        # Long-lived `git cat-file --batch` processes (the worker keeps adapters per source),
        # each used by one fetch at a time: no process spawn per batch, and up to
        # `options.git_readers` fetches of one source read in parallel (git inflates the
        # blobs on another core while this process transforms and writes).
        self._idle_readers: list[asyncio.subprocess.Process] = []
        self._live_readers: set[asyncio.subprocess.Process] = set()
        self._reader_slots = asyncio.Semaphore(max(1, self.options.git_readers))

    async def _take_reader(self) -> asyncio.subprocess.Process:
        while self._idle_readers:
            proc = self._idle_readers.pop()
            if proc.returncode is None:
                return proc
            self._live_readers.discard(proc)
        # A new reader only now and then (they are kept): check the repository first, so a
        # missing or unreadable one is reported as such rather than as a reader that died.
        await self._check_repository()
        proc = await self._spawn("cat-file", "--batch", stdin=asyncio.subprocess.PIPE)
        self._live_readers.add(proc)
        return proc

    async def _drop_reader(self, proc: asyncio.subprocess.Process) -> None:
        self._live_readers.discard(proc)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def aclose(self) -> None:
        self._idle_readers.clear()
        for proc in list(self._live_readers):
            await self._drop_reader(proc)

    # -- plumbing -----------------------------------------------------------

    async def _spawn(self, *args: str, stdin: int | None = None) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                self.options.git_binary,
                "-C",
                self.path,
                *args,
                stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **_GIT_ENV},
                # Out of the worker's process group: a SIGTERM to the group (a supervisor's
                # stop) must not kill git under a batch the worker is still finishing. The
                # readers end on their own at stdin EOF when the worker is gone.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise SourceError(
                f"the git executable {self.options.git_binary!r} was not found; install git or set its path"
            ) from None

    async def _git(self, *args: str) -> bytes:
        proc = await self._spawn(*args)
        returncode, out, err = await _communicate(proc)
        if returncode != 0:
            raise await self._diagnosed(GitCommandError(args, returncode, err))
        return out

    async def _check_repository(self) -> None:
        """Raise a SourceError naming the cause when the repository cannot be read now (asked anew
        each time: a repository can disappear or lose its permissions between two jobs)."""
        if not os.path.exists(self.path):
            raise SourceError(f"git source path {self.path!r} does not exist")
        if not os.path.isdir(self.path):
            raise SourceError(f"git source path {self.path!r} is not a directory")
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise SourceError(f"git source path {self.path!r} is not readable by this worker (permission denied)")
        proc = await self._spawn("rev-parse", "--git-dir")
        _, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode("utf-8", errors="replace").strip().splitlines()
            raise SourceError(
                f"{self.path!r} is not a git repository ({detail[-1] if detail else 'git rev-parse failed'})"
            )

    async def _diagnosed(self, exc: SourceError) -> SourceError:
        """The error to report for a failed git command: the repository's own problem when it has one."""
        try:
            await self._check_repository()
        except SourceError as cause:
            return cause
        return exc

    async def _commit_of(self, ref: str) -> str | None:
        if ref.startswith("-"):  # would be read as an option: never a commit here
            return None
        proc = await self._spawn("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        out, _ = await proc.communicate()
        return out.decode("ascii").strip() if proc.returncode == 0 else None

    async def head(self) -> str:
        """The commit the tracked branch (or HEAD) points at now."""
        await self._check_repository()
        if self.config.branch:
            commit = await self._commit_of(f"refs/heads/{self.config.branch}")
            if commit is None:
                raise SourceError(f"branch {self.config.branch!r} does not exist in {self.path!r}")
            return commit
        commit = await self._commit_of("HEAD")
        if commit is None:
            raise SourceError(f"repository {self.path!r} has no commits on HEAD yet")
        return commit

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        if ancestor.startswith("-") or descendant.startswith("-"):
            return False
        proc = await self._spawn("merge-base", "--is-ancestor", ancestor, descendant)
        _, err = await proc.communicate()
        if proc.returncode in (0, 1):
            return proc.returncode == 0
        # 128: one of them is not a commit of this repository (or the repository went away).
        await self._check_repository()
        return False

    # -- listing ------------------------------------------------------------

    async def list_diff(self, base: str, commit: str) -> tuple[list[FileChange] | None, str | None]:
        if not await self.is_ancestor(base, commit):
            if await self._commit_of(base) is None:
                return None, f"the documents' commit {base[:12]} is not in this repository (unknown or unreachable)"
            return None, f"the documents' commit {base[:12]} is not an ancestor of {commit[:12]} (a force push)"
        return await self._diff(base, commit), None

    async def list_full(self, commit: str) -> list[FileChange]:
        out = await self._git("ls-tree", "-r", "-z", "--long", "--full-tree", commit)
        files = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, oid, size = meta.split(None, 3)
            if kind != b"blob" or mode == _GITLINK:
                continue
            files.append(FileChange(path=decode_path(path), change="upsert", blob=oid.decode("ascii"), size=int(size)))
        return files

    async def _diff(self, before: str, after: str) -> list[FileChange]:
        out = await self._git("diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--raw", before, after)
        fields = out.split(b"\0")
        changes: list[tuple[bytes, Literal["upsert", "delete"], str | None]] = []
        i = 0
        while i + 1 < len(fields):
            meta, path = fields[i], fields[i + 1]
            i += 2
            if not meta.startswith(b":"):
                raise SourceError(f"unexpected `git diff-tree` output near {meta[:80]!r}")
            old_mode, new_mode, _old_oid, new_oid, _status = meta[1:].split(b" ", 4)
            old_is_file = old_mode not in (_NULL_MODE, _GITLINK)
            new_is_file = new_mode not in (_NULL_MODE, _GITLINK)
            if new_is_file:
                changes.append((path, "upsert", new_oid.decode("ascii")))
            elif old_is_file:
                # Deleted, or replaced by a submodule: either way no longer a file here.
                changes.append((path, "delete", None))
        sizes = await self._sizes([oid for _, change, oid in changes if oid])
        return [
            FileChange(path=decode_path(path), change=change, blob=oid, size=sizes.get(oid) if oid else None)
            for path, change, oid in changes
        ]

    async def _sizes(self, oids: list[str]) -> dict[str, int]:
        if not oids:
            return {}
        proc = await self._spawn("cat-file", "--batch-check", stdin=asyncio.subprocess.PIPE)
        returncode, out, err = await _communicate(
            proc, "".join(f"{oid}\n" for oid in dict.fromkeys(oids)).encode("ascii")
        )
        if returncode != 0:
            raise GitCommandError(("cat-file", "--batch-check"), returncode, err)
        sizes = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:
                sizes[parts[0].decode("ascii")] = int(parts[2])
        return sizes

    async def read_file(self, commit: str, path: str, max_bytes: int) -> FileAt:
        """`git cat-file --batch-check` on `<commit>:<path>` (type and size, nothing read yet),
        then the blob itself when it is a file no larger than `max_bytes`."""
        if commit.startswith("-") or "\n" in path or "\n" in commit:
            return FileAt(None, f"{path!r} at {commit!r} is not a name git can look up")
        proc = await self._spawn("cat-file", "--batch-check", stdin=asyncio.subprocess.PIPE)
        returncode, out, err = await _communicate(proc, f"{commit}:{path}\n".encode())
        if returncode != 0:
            raise await self._diagnosed(GitCommandError(("cat-file", "--batch-check"), returncode, err))
        parts = out.decode("utf-8", errors="replace").split()
        if len(parts) != 3:
            # `<name> missing`: no such path at that commit (or the commit's object is absent).
            return FileAt(None)
        oid, kind, size = parts
        if kind != "blob":
            return FileAt(None, f"is a {'directory' if kind == 'tree' else kind}, not a file")
        if int(size) > max_bytes:
            return FileAt(None, f"{size} bytes, more than the {max_bytes} a config file may have")
        return FileAt(await self._git("cat-file", "blob", oid))

    # -- content ------------------------------------------------------------

    async def fetch(self, files: Sequence[FileChange]) -> AsyncGenerator[Fetched, None]:
        by_oid: dict[bytes, list[FileChange]] = {}
        for change in files:
            if change.change != "upsert":
                continue
            oid = (change.blob or "").encode("ascii", errors="replace")
            if not _OID.match(oid):
                yield Fetched(change, None, f"no valid blob id for {change.path!r}: {change.blob!r}")
                continue
            by_oid.setdefault(oid, []).append(change)
        if not by_oid:
            return

        pending = list(by_oid)  # ids not answered yet, in the order they are asked for
        restarts = 0
        async with self._reader_slots:
            while True:
                proc = await self._take_reader()
                assert proc.stdin is not None and proc.stdout is not None
                clean = False

                async def feed(proc=proc, ids=pending) -> None:
                    try:
                        proc.stdin.write(b"".join(oid + b"\n" for oid in ids))
                        await proc.stdin.drain()
                    except (BrokenPipeError, ConnectionResetError):
                        return  # git died; the reader reports it

                writer = asyncio.create_task(feed())
                answered = 0
                try:
                    for oid in pending:
                        header = await proc.stdout.readline()
                        if not header:
                            err = (
                                (await proc.stderr.read()).decode("utf-8", errors="replace").strip()
                                if proc.stderr
                                else ""
                            )
                            raise _ReaderDied(
                                f"git cat-file --batch ended early in {self.path!r}: {err or 'no message'}"
                            )
                        parts = header.split()
                        if parts[0] != oid:
                            raise SourceError(f"git cat-file --batch answered {header[:100]!r} for {oid.decode()}")
                        changes = by_oid[oid]
                        if len(parts) == 2 and parts[1] in (b"missing", b"ambiguous"):
                            answered += 1
                            for change in changes:
                                yield Fetched(
                                    change, None, f"blob {oid.decode()} is {parts[1].decode()} in {self.path!r}"
                                )
                            continue
                        kind, size = parts[1], int(parts[2])
                        try:
                            content = await proc.stdout.readexactly(size + 1)
                        except asyncio.IncompleteReadError:
                            raise _ReaderDied(
                                f"git cat-file --batch ended in the middle of an object in {self.path!r}"
                            ) from None
                        content = content[:-1]  # the newline after every object
                        answered += 1
                        for change in changes:
                            if kind != b"blob":
                                yield Fetched(change, None, f"{oid.decode()} is a {kind.decode()}, not a blob")
                            else:
                                yield Fetched(change, content)
                    await writer
                    clean = True
                    return
                except _ReaderDied as died:
                    # The process went away under us (a signal to the worker's process group
                    # at shutdown, an OOM kill): not the files' fault. The ids not answered yet
                    # go to a fresh process; a repository that kills every reader is an error.
                    restarts += 1
                    if restarts > _READER_RESTARTS:
                        # Transient unless the repository itself is the problem (`_diagnosed` then says so):
                        # the batch stage retries it with backoff before it counts the files failed.
                        raise await self._diagnosed(
                            TransientSourceError(f"{died} (after {_READER_RESTARTS} fresh processes)")
                        ) from None
                    log.warning("%s; %d blob(s) left, reading them with a fresh process", died, len(pending) - answered)
                    pending = pending[answered:]
                finally:
                    if not writer.done():
                        writer.cancel()
                    if clean:
                        self._idle_readers.append(proc)
                    else:
                        # Stopped mid-stream (an error, or the consumer closed early): unread answers
                        # would desynchronize the next fetch, so this process is not reused.
                        await self._drop_reader(proc)
