"""A repository source's config file (`.hookstream.yml`): bytes in, a `ConfigFound` out. Pure.

The worker reads the file at the commit a job converges to and hands its bytes
here (`app.sync.config_detection`). The file is YAML (PyYAML's safe loader, the
subset JSON can express) with the keys of `RepositoryConfig`; its JSON Schema is
`schemas/hookstream.config.json`.

A file in a repository is hostile input. Invariants:
- `parse` never raises: whatever the bytes, the answer is `configured` or
  `invalid` with a message that names the file and, where the parser knows it,
  the line and column;
- at most `MAX_CONFIG_BYTES` are parsed; the file must be UTF-8; YAML aliases and
  anchors are refused (no exponential expansion), nesting deeper than
  `MAX_DEPTH` is refused before it is built (no recursion limit to hit), and so
  are duplicate keys (one of two `exclude:` would be dropped silently) and tags
  other than the standard ones (safe loading: no object is ever constructed);
- an invalid file keeps the rules in effect (`ConfigFound.rules`), or writes
  nothing when the source never had a valid one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from app.core.jobs import job_sequence
from app.core.path_rules import check_pattern
from app.events.config import INVALID, MAX_PATTERN_LENGTH, MAX_PATTERNS, NOTHING, ConfigFound, PathRules

DEFAULT_CONFIG_FILES = (".hookstream.yml", ".hookstream.yaml")
MAX_CONFIG_BYTES = 64 * 1024
MAX_DEPTH = 8
MAX_CONFIG_FILES = 8


def _valid_pattern(pattern: str) -> str:
    check_pattern(pattern)
    return pattern


Glob = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH), AfterValidator(_valid_pattern)]


class RepositoryConfig(BaseModel):
    """The config file of a repository source (`.hookstream.yml` at the root of the tracked branch).

    Every key is optional; an empty file is a valid config that writes every path.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="hookstream config file")

    version: Literal[1] = Field(default=1, description="The format of this file; 1 is the only one.")
    include: list[Glob] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="Globs of the paths to write (relative to the repository root; `*` and `?` within a "
        "segment, `[...]` sets, `**` any number of segments). None: every path.",
    )
    exclude: list[Glob] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="Globs of paths never to write, even when an include pattern matches them.",
    )

    def rules(self) -> PathRules:
        return PathRules(include=tuple(self.include), exclude=tuple(self.exclude))


class _ConfigError(Exception):
    """Why a config file is refused; the message is for the person who wrote it."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the bounds a file from a repository needs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser.peek_event unannotated
            raise _ConfigError(
                f"{_where(mark)}aliases (*name) are not allowed in a config file"
                " (a pattern starting with '*' must be quoted: '*.md')"
            )
        event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser.peek_event unannotated
        if getattr(event, "anchor", None):
            raise _ConfigError(f"{_where(event.start_mark)}anchors (&name) are not allowed in a config file")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _ConfigError(f"{_where(event.start_mark)}nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key (a list): the schema refuses it below
                continue
            if duplicate:
                raise _ConfigError(f"{_where(key_node.start_mark)}the key {key!r} is given twice")
        return super().construct_mapping(node, deep=deep)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _load(text: str) -> Any:
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "not valid YAML"
        message = f"{_where(exc.problem_mark)}{problem}"
        if "alias" in problem or "alphabetic or numeric" in problem:
            message += " (a pattern starting with '*' or '&' must be quoted: '*.md')"
        return message
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.position + 1} is not allowed in YAML ({exc.reason})"
    return f"not valid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _schema_message(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False)[:3]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "the file"
        if err["type"] == "extra_forbidden":
            known = ", ".join(RepositoryConfig.model_fields)
            problems.append(f"{where}: unknown key (the keys are {known})")
        else:
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def parse(path: str, raw: bytes, in_effect: PathRules | None) -> ConfigFound:
    """The config found in `path`, whose content is `raw`; `in_effect` are the rules the
    source's documents were written with (None: no valid config was ever applied)."""

    def invalid(why: str) -> ConfigFound:
        return refused(path, f"{path}: {why}", in_effect)

    if len(raw) > MAX_CONFIG_BYTES:
        return invalid(f"{len(raw)} bytes, more than the {MAX_CONFIG_BYTES} a config file may have")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return invalid(f"not UTF-8 text (byte {exc.start})")
    try:
        data = _load(text)
    except _ConfigError as exc:
        return invalid(str(exc))
    except yaml.YAMLError as exc:
        return invalid(_yaml_message(exc))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # What a constructor of a standard tag may raise on a value it cannot build
        # (a timestamp out of range); never expected past the bounds above, never a crash.
        return invalid(f"not a readable YAML value ({type(exc).__name__}: {exc})")
    if data is None:
        data = {}  # an empty file (or only comments): the defaults
    if not isinstance(data, dict):
        return invalid(f"must be a mapping of keys (include, exclude), not a {_kind(data)}")
    try:
        config = RepositoryConfig.model_validate(data)
    except ValidationError as exc:
        return invalid(_schema_message(exc))
    return ConfigFound(status="configured", path=path, rules=config.rules())


def refused(path: str, error: str, in_effect: PathRules | None) -> ConfigFound:
    """An invalid config file: the rules in effect stay, or nothing is written when there were none."""
    return ConfigFound(
        status=INVALID, path=path, error=error[:2000], rules=in_effect if in_effect is not None else NOTHING
    )


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def config_files(source_config: dict[str, Any]) -> tuple[str, ...]:
    """The config file names a source's config names (`config_files`, first found wins), else the defaults.
    ValueError when they are not a short list of relative paths."""
    names = source_config.get("config_files")
    if names is None:
        return DEFAULT_CONFIG_FILES
    if (
        not isinstance(names, list)
        or not names
        or len(names) > MAX_CONFIG_FILES
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"the source's config_files must be a list of 1 to {MAX_CONFIG_FILES} paths, got {names!r}")
    for name in names:
        segments = name.split("/")
        if len(name) > 300 or any(ord(c) < 32 for c in name) or any(s in ("", ".", "..") for s in segments):
            raise ValueError(f"the source's config_files: {name!r} is not a path relative to the repository root")
    return tuple(names)


def is_newer_config(recorded_job_id: str | None, job_id: str) -> bool:
    """Whether the config a plan of `job_id` found replaces the one recorded from `recorded_job_id`'s.

    A source's jobs are ordered by the offset in their ids: the config of a late plan of an
    older job (re-sent after a crash) never replaces a newer one. The fold and the `sources`
    projection apply the same rule, so they agree whatever arrives late.
    """
    seq, recorded = job_sequence(job_id), job_sequence(recorded_job_id) if recorded_job_id else None
    return seq is None or recorded is None or seq >= recorded
