"""A file's bytes become a document: pure, no I/O.

Invariants:
- `sha256` and `size` are of the exact bytes, whatever the file is.
- `content` is the text only for a UTF-8 text file within `max_text_bytes`;
  a binary file (a NUL byte in the first 8 KiB, or not valid UTF-8) or an
  oversize one gets metadata only, `content=None`, and `skipped=True` with
  the reason, so a batch counts it as skipped rather than processed.
- PostgreSQL `text` cannot hold NUL: a text document never contains one,
  because NUL anywhere makes the bytes binary here.
"""

from __future__ import annotations

import codecs
import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Literal

SNIFF_BYTES = 8 * 1024

SkipReason = Literal["binary", "oversize"]


@dataclass(frozen=True, slots=True)
class Document:
    path: str
    content: str | None
    sha256: str
    size: int
    language: str | None
    title: str
    is_binary: bool
    skipped: bool
    skip_reason: SkipReason | None = None


LANGUAGES: dict[str, str] = {
    # programming languages
    ".py": "python",
    ".pyi": "python",
    ".pyx": "cython",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".groovy": "groovy",
    ".gradle": "groovy",
    ".clj": "clojure",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".m": "objective-c",
    ".mm": "objective-cpp",
    ".swift": "swift",
    ".cs": "csharp",
    ".fs": "fsharp",
    ".vb": "vb",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
    ".pm": "perl",
    ".lua": "lua",
    ".r": "r",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hrl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".mli": "ocaml",
    ".elm": "elm",
    ".jl": "julia",
    ".zig": "zig",
    ".nim": "nim",
    ".v": "verilog",
    ".sv": "systemverilog",
    ".vhd": "vhdl",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".fish": "fish",
    ".ps1": "powershell",
    ".bat": "batch",
    ".cmd": "batch",
    ".sql": "sql",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".gql": "graphql",
    ".vue": "vue",
    ".svelte": "svelte",
    ".sol": "solidity",
    ".tf": "terraform",
    ".hcl": "hcl",
    # markup, styles, data, config
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "mdx",
    ".rst": "restructuredtext",
    ".adoc": "asciidoc",
    ".txt": "text",
    ".tex": "latex",
    ".html": "html",
    ".htm": "html",
    ".xml": "xml",
    ".svg": "svg",
    ".css": "css",
    ".scss": "scss",
    ".sass": "sass",
    ".less": "less",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "conf",
    ".env": "dotenv",
    ".csv": "csv",
    ".tsv": "tsv",
    ".ipynb": "jupyter",
}

FILENAMES: dict[str, str] = {
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "makefile": "makefile",
    "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
    "gemfile": "ruby",
    "rakefile": "ruby",
    "jenkinsfile": "groovy",
    "build": "starlark",
    "build.bazel": "starlark",
    "workspace": "starlark",
    "justfile": "just",
    "procfile": "procfile",
    # dotfiles have no extension to splitext
    ".env": "dotenv",
    ".bashrc": "shell",
    ".zshrc": "shell",
    ".profile": "shell",
    ".gitignore": "gitignore",
    ".dockerignore": "gitignore",
    ".editorconfig": "ini",
}

MARKDOWN_EXTENSIONS = (".md", ".markdown", ".mdx")

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def language_of(path: str) -> str | None:
    name = posixpath.basename(path).lower()
    if name in FILENAMES:
        return FILENAMES[name]
    if name.startswith("dockerfile.") or name.endswith(".dockerfile"):
        return "dockerfile"
    _, ext = posixpath.splitext(name)
    return LANGUAGES.get(ext)


def markdown_title(text: str) -> str | None:
    """The first heading (ATX `# x` or setext `x\\n===`), outside front matter and code fences."""
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                start = i + 1
                break
    fence: str | None = None
    previous = ""
    for line in lines[start:]:
        if (m := _FENCE.match(line)) is not None:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            previous = ""
            continue
        if fence is not None:
            continue
        if (m := _ATX.match(line)) is not None and m.group(2).strip():
            return m.group(2).strip()
        if previous.strip() and _SETEXT.match(line) and not _ATX.match(previous):
            return previous.strip()
        previous = line
    return None


def _oversize_is_binary(sample: bytes) -> bool:
    """An oversize file is judged by its first 8 KiB; a character cut at the sample's end is not an error."""
    if b"\x00" in sample:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return True
    return False


def to_document(path: str, content: bytes, max_text_bytes: int) -> Document:
    size = len(content)
    digest = hashlib.sha256(content).hexdigest()
    name = posixpath.basename(path) or path
    language = language_of(path)
    if size > max_text_bytes:
        is_binary = _oversize_is_binary(content[:SNIFF_BYTES])
        return Document(
            path, None, digest, size, language, name, is_binary, True, "binary" if is_binary else "oversize"
        )
    text: str | None = None
    if b"\x00" not in content:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if text is None:
        return Document(path, None, digest, size, language, name, True, True, "binary")
    title = name
    if path.lower().endswith(MARKDOWN_EXTENSIONS):
        title = markdown_title(text) or name
    return Document(path, text, digest, size, language, title, False, False, None)
