"""core.documents.to_document: a table of files and the documents they become."""

from __future__ import annotations

import hashlib

import pytest

from app.core.documents import Document, language_of, markdown_title, to_document

LIMIT = 1000
CUT_CHARACTER = "a" * 8191 + "é"  # é straddles the 8 KiB sniff boundary

CASES = [
    # id, path, content, expected (content, language, title, is_binary, skipped, skip_reason)
    ("python", "src/app/main.py", b"print('hi')\n", ("print('hi')\n", "python", "main.py", False, False, None)),
    (
        "markdown heading",
        "docs/guide.md",
        b"intro\n\n## Getting started\n",
        ("intro\n\n## Getting started\n", "markdown", "Getting started", False, False, None),
    ),
    (
        "markdown closing hashes",
        "README.md",
        b"# Hookstream #\n",
        ("# Hookstream #\n", "markdown", "Hookstream", False, False, None),
    ),
    (
        "markdown without heading",
        "notes.md",
        b"just text\n",
        ("just text\n", "markdown", "notes.md", False, False, None),
    ),
    ("markdown uppercase ext", "DOC.MARKDOWN", b"# Up\n", ("# Up\n", "markdown", "Up", False, False, None)),
    (
        "heading in a non-markdown file",
        "a.txt",
        b"# Not a title\n",
        ("# Not a title\n", "text", "a.txt", False, False, None),
    ),
    ("empty file", "empty.txt", b"", ("", "text", "empty.txt", False, False, None)),
    (
        "unicode text",
        "x/ünïcödé 名前.txt",
        "ünïcödé\n".encode(),
        ("ünïcödé\n", "text", "ünïcödé 名前.txt", False, False, None),
    ),
    ("utf-8 bom kept", "bom.json", b"\xef\xbb\xbf{}", ("\ufeff{}", "json", "bom.json", False, False, None)),
    (
        "dockerfile by name",
        "deploy/Dockerfile",
        b"FROM x\n",
        ("FROM x\n", "dockerfile", "Dockerfile", False, False, None),
    ),
    ("makefile by name", "Makefile", b"all:\n", ("all:\n", "makefile", "Makefile", False, False, None)),
    ("unknown extension", "data.xyz", b"hello", ("hello", None, "data.xyz", False, False, None)),
    ("no extension", "LICENSE", b"MIT\n", ("MIT\n", None, "LICENSE", False, False, None)),
    ("dotfile", ".env", b"A=1\n", ("A=1\n", "dotenv", ".env", False, False, None)),
    ("nul byte is binary", "img.png", b"\x89PNG\r\n\x1a\n\0\0", (None, None, "img.png", True, True, "binary")),
    ("nul late in a small file is binary", "a.txt", b"a" * 900 + b"\0", (None, "text", "a.txt", True, True, "binary")),
    (
        "invalid utf-8 is binary",
        "latin1.txt",
        "café".encode("latin-1"),
        (None, "text", "latin1.txt", True, True, "binary"),
    ),
    ("binary markdown keeps the file name", "x.md", b"# T\n\0", (None, "markdown", "x.md", True, True, "binary")),
    ("exactly the limit is text", "full.txt", b"a" * LIMIT, ("a" * LIMIT, "text", "full.txt", False, False, None)),
    ("over the limit is oversize", "big.txt", b"a" * (LIMIT + 1), (None, "text", "big.txt", False, True, "oversize")),
    ("oversize with nul is binary", "big.bin", b"\0" * (LIMIT + 1), (None, None, "big.bin", True, True, "binary")),
    (
        "oversize cut inside a character is text",
        "big.md",
        CUT_CHARACTER.encode(),
        (None, "markdown", "big.md", False, True, "oversize"),
    ),
    (
        "oversize with invalid utf-8 in its sample is binary",
        "big.txt",
        b"\xff" + b"a" * LIMIT,
        (None, "text", "big.txt", True, True, "binary"),
    ),
]


@pytest.mark.parametrize("path, content, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_file_becomes_the_expected_document(path, content, expected):
    doc = to_document(path, content, LIMIT)

    assert (doc.content, doc.language, doc.title, doc.is_binary, doc.skipped, doc.skip_reason) == expected
    assert doc.path == path
    assert doc.size == len(content)
    assert doc.sha256 == hashlib.sha256(content).hexdigest()
    assert doc.skipped == (doc.content is None)


def test_documents_are_frozen_values():
    doc = to_document("a.py", b"x", LIMIT)
    assert doc == to_document("a.py", b"x", LIMIT)
    with pytest.raises(AttributeError):
        doc.content = "y"
    assert isinstance(doc, Document)


TITLES = [
    ("atx", "# Title\n", "Title"),
    ("first of several", "text\n### Third level\n# Later\n", "Third level"),
    ("setext equals", "My Title\n========\nbody\n", "My Title"),
    ("setext dashes", "Sub title\n---\n", "Sub title"),
    ("thematic break after blank is not a heading", "\n---\n# Real\n", "Real"),
    ("front matter skipped", "---\ntitle: x\nlayout: y\n---\n# After front matter\n", "After front matter"),
    ("fenced code skipped", "```sh\n# not a heading\n```\n# Heading\n", "Heading"),
    ("tilde fence skipped", "~~~\n# no\n~~~\n## Yes\n", "Yes"),
    ("hash without space is not a heading", "#hashtag\n", None),
    ("empty heading is not a title", "#\n# Good\n", "Good"),
    ("indented four spaces is code", "    # code\n", None),
    ("no heading", "plain\n", None),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in TITLES], ids=[c[0] for c in TITLES])
def test_markdown_title_is_the_first_heading(text, expected):
    assert markdown_title(text) == expected


@pytest.mark.parametrize(
    "path, language",
    [
        ("a/b/c.ts", "typescript"),
        ("x.TSX", "typescript"),
        ("lib.rs", "rust"),
        ("main.go", "go"),
        ("k.yml", "yaml"),
        ("k.yaml", "yaml"),
        ("s.sql", "sql"),
        ("build.gradle", "groovy"),
        ("CMakeLists.txt", "cmake"),
        ("Dockerfile.dev", "dockerfile"),
        ("web.dockerfile", "dockerfile"),
        ("archive.tar.gz", None),
        ("Makefile.am", None),
    ],
)
def test_language_comes_from_the_extension_or_the_file_name(path, language):
    assert language_of(path) == language
