"""Config files for generated git histories, and what they mean, known apart from the app's code.

`config_file()` draws the bytes of a `.hookstream.yml` (mostly valid, in flow or
block style, sometimes broken by a documented rule) and records in `MEANING`
what each means: its (include, exclude) rules, or None for a broken one. The
oracle reads the file at a commit with git (`meaning_at`) and selects paths with
tests/support/globs.py, never with `app.core`.
"""

from __future__ import annotations

from hypothesis import strategies as st

from tests.support import gitrepo, globs

CONFIG_FILE = ".hookstream.yml"
# Rules as the oracle knows them: (include, exclude).
Rules = tuple[tuple[str, ...], tuple[str, ...]]
EVERYTHING: Rules = ((), ())
NOTHING: Rules = ((), ("**",))
# What each config file the generator wrote means: its rules, or None for a broken one.
MEANING: dict[bytes, Rules | None] = {}
PATTERN_SEGMENTS = st.sampled_from(
    ["*", "**", "?.md", "*.md", "docs", "src", "deep", "[a-c].md", "x", "y", "*.py", "z.json", "[!d]*", "*.txt", ".*"]
)
# Half of them patterns that select some of the generated paths, the rest composed at random (most select nothing).
PATTERN = st.one_of(
    st.sampled_from(
        [
            "*.md",
            "docs/**",
            "**/*.py",
            "src/**",
            "x/**",
            "**/*.md",
            "a.md",
            "docs/*",
            "*",
            "[a-c].md",
            "src/*/f.py",
            "**/d.*",
        ]
    ),
    st.lists(PATTERN_SEGMENTS, min_size=1, max_size=3).map("/".join),
)
# Broken by the documented rules: YAML errors, a trailing '/', an unknown key, not a mapping.
BROKEN_CONFIGS = (b"include: ['*.md'\n", b"exclude: *.md\n", b"include: [docs/]\n", b"exlude: [a.md]\n", b"- a.md\n")


@st.composite
def config_file(draw) -> bytes:
    """The bytes of a `.hookstream.yml`: mostly valid (flow or block lists), sometimes broken."""
    if draw(st.integers(0, 5)) == 0:
        content = draw(st.sampled_from(BROKEN_CONFIGS))
        MEANING[content] = None
        return content
    include, exclude = draw(st.lists(PATTERN, max_size=2)), draw(st.lists(PATTERN, min_size=1, max_size=3))
    lines = [b"# generated"]
    for key, patterns in (("include", include), ("exclude", exclude)):
        if not patterns and draw(st.booleans()):
            continue
        if draw(st.booleans()):
            lines.append(f"{key}: [{', '.join(repr(p) for p in patterns)}]".encode())
        else:
            lines.append(f"{key}:".encode() + (b"" if patterns else b" []"))
            lines += [f"  - '{p}'".encode() for p in patterns]
    content = b"\n".join(lines) + b"\n"
    MEANING[content] = (tuple(include), tuple(exclude))
    return content


def meaning_at(path, commit: str) -> Rules | None:
    """The rules of the config file at `commit` as the generator wrote them (None: broken)."""
    found = gitrepo.git(path, "cat-file", "--batch", input=f"{commit}:{CONFIG_FILE}\n".encode())
    header, _, rest = found.partition(b"\n")
    if header.endswith(b"missing"):
        return EVERYTHING
    return MEANING[rest[: int(header.split()[2])]]


def selected(tree: dict[str, str], rules: Rules) -> dict[str, str]:
    include, exclude = rules
    return {p: d for p, d in tree.items() if globs.written(p, include, exclude)}
