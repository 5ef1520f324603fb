"""Build real git repositories fast, for tests and benchmarks (`git fast-import`, no global config).

    shas = build_repo(path, commits=[
        {"README.md": b"# hi\\n", "src/a.py": b"x = 1\\n"},                 # commit 1
        {"src/a.py": None, "src/b.py": b"x = 1\\n", "bin/run": Executable(b"#!/bin/sh\\n")},  # commit 2
    ])

Each commit is a mapping of path -> change applied on top of the previous
commit: `bytes` writes a regular file, `None` deletes, `Executable(bytes)`,
`Symlink(target)` and `Submodule(commit_sha)` write those kinds of entry. A
rename is a delete plus a write. `build_repo(path, files={...})` is one commit.
Calling it again on an existing repository appends commits to the branch.

`synthetic_files(n)` makes a deterministic tree of n files of mixed kinds
(sources, markdown, a few binaries) across nested directories: 10,000 files
import in about a second.

`tree_of(path, commit)` is an oracle read back with `git ls-tree`,
independent of `app.sources`.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

AUTHOR = "t <t@t>"
EPOCH = 1_700_000_000
ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


@dataclass(frozen=True)
class Executable:
    content: bytes


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Submodule:
    commit: str


Change = bytes | None | Executable | Symlink | Submodule


def git(repo: Path | str, *args: str, input: bytes | None = None) -> bytes:
    """Run git in `repo` with no user or system config; raise with stderr on failure."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args],
        input=input,
        capture_output=True,
        env=ENV,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _quote(path: str) -> bytes:
    """A C-style quoted path for fast-import: any byte is fine inside quotes but \\\\, \" and newline."""
    raw = path.encode("utf-8").replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    return b'"' + raw + b'"'


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def build_repo(
    path: Path | str,
    files: Mapping[str, Change] | None = None,
    commits: Sequence[Mapping[str, Change]] = (),
    *,
    branch: str = "main",
    checkout: bool = False,
    message: str = "commit",
) -> list[str]:
    """Create (or extend) a repository at `path`; returns the new commits' shas, oldest first.

    `checkout=True` also writes the working tree (slower; plumbing never needs it).
    """
    repo = Path(path)
    all_commits = ([files] if files is not None else []) + list(commits)
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", "-b", branch)
    try:
        parent: str | None = git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}").decode().strip()
    except RuntimeError:
        parent = None
    count = int(git(repo, "rev-list", "--count", parent).decode()) if parent else 0

    stream = bytearray()
    for i, changes in enumerate(all_commits):
        when = EPOCH + (count + i) * 60
        stream += b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), i + 1)
        stream += b"author %s %d +0000\ncommitter %s %d +0000\n" % (AUTHOR.encode(), when, AUTHOR.encode(), when)
        stream += _data(f"{message} {count + i + 1}".encode())
        if i == 0 and parent:
            stream += b"from %s\n" % parent.encode()
        for name, change in changes.items():
            quoted = _quote(name)
            if change is None:
                stream += b"D %s\n" % quoted
            elif isinstance(change, bytes):
                stream += b"M 100644 inline %s\n" % quoted + _data(change)
            elif isinstance(change, Executable):
                stream += b"M 100755 inline %s\n" % quoted + _data(change.content)
            elif isinstance(change, Symlink):
                stream += b"M 120000 inline %s\n" % quoted + _data(change.target.encode("utf-8"))
            elif isinstance(change, Submodule):
                stream += b"M 160000 %s %s\n" % (change.commit.encode(), quoted)
            else:
                raise TypeError(f"{name}: unsupported change {change!r}")
        stream += b"\n"
    marks = repo / ".git" / "fast-import.marks"
    git(repo, "fast-import", "--quiet", "--done", f"--export-marks={marks}", input=bytes(stream) + b"done\n")
    shas = {}
    for line in marks.read_text().splitlines():
        mark, sha = line.split()
        shas[int(mark[1:])] = sha
    marks.unlink()
    git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    if checkout:
        git(repo, "read-tree", "-u", "--reset", "HEAD")
    return [shas[i + 1] for i in range(len(all_commits))]


def tree_of(repo: Path | str, commit: str) -> dict[str, tuple[str, str, int]]:
    """path -> (mode, blob id, size) for every blob of `commit` (submodules excluded)."""
    out = git(repo, "ls-tree", "-r", "-z", "--long", commit)
    entries = {}
    for record in out.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, kind, oid, size = meta.split(None, 3)
            if kind == b"blob":
                entries[name.decode("utf-8", "backslashreplace")] = (mode.decode(), oid.decode(), int(size))
    return entries


def digests_at(repo: Path | str, ref: str) -> dict[str, str]:
    """path -> sha256 of the bytes of every file (blob) at `ref`, read with `git ls-tree` and
    `git cat-file`: what a source's documents are once they have converged on `ref`."""
    import hashlib

    tree = tree_of(repo, ref)
    oids = sorted({oid for _, oid, _ in tree.values()})
    out = git(repo, "cat-file", "--batch", input="".join(f"{o}\n" for o in oids).encode()) if oids else b""
    digests: dict[str, str] = {}
    pos = 0
    for oid in oids:
        end = out.index(b"\n", pos)
        size = int(out[pos:end].split()[2])
        digests[oid] = hashlib.sha256(out[end + 1 : end + 1 + size]).hexdigest()
        pos = end + 1 + size + 1
    return {path: digests[oid] for path, (_, oid, _) in tree.items()}


def synthetic_files(count: int, *, seed: int = 0, binary_every: int = 97, max_size: int = 6000) -> dict[str, bytes]:
    """`count` deterministic files in nested directories: python, markdown, json, text, some binary."""
    rng = random.Random(seed)
    words = (
        "sync",
        "source",
        "batch",
        "stream",
        "event",
        "kafka",
        "topic",
        "offset",
        "fold",
        "state",
        "commit",
        "tree",
    )
    files: dict[str, bytes] = {}
    for i in range(count):
        directory = f"pkg{i % 17:02d}/mod{(i // 17) % 23:02d}"
        if binary_every and i % binary_every == 0:
            files[f"{directory}/asset_{i:05d}.bin"] = rng.randbytes(rng.randint(16, 512)) + b"\0"
            continue
        size = rng.randint(40, max_size)
        body = " ".join(rng.choices(words, k=size // 6))
        kind = i % 4
        if kind == 0:
            files[f"{directory}/file_{i:05d}.py"] = f'"""{body[:60]}"""\n\nVALUE = {i}\n# {body}\n'.encode()
        elif kind == 1:
            files[f"{directory}/doc_{i:05d}.md"] = f"# Document {i}\n\n{body}\n".encode()
        elif kind == 2:
            files[f"{directory}/data_{i:05d}.json"] = f'{{"id": {i}, "text": "{body}"}}\n'.encode()
        else:
            files[f"{directory}/note_{i:05d}.txt"] = f"{body}\n".encode()
    return files
