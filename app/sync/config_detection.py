"""Reading a source's config file at the commit a job converges to, through its adapter.

The planner calls `config_at` for sources whose adapter `reads_config_files`
(git, github), on every full listing, on a diff that adds, modifies or removes
a config file, and whenever the rules the documents were written with are
unknown. A diff that touches no config file leaves the config as it was at the
documents' commit: nothing is read, and the job keeps the rules in effect.

The first name of the source's `config_files` (default `.hookstream.yml`, then
`.hookstream.yaml`) that exists at the commit is the config file.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.core import config_file
from app.events import FileChange
from app.events.config import UNCONFIGURED, ConfigFound, PathRules
from app.sources import SourceAdapter


def touches_config(files: Iterable[FileChange], names: tuple[str, ...]) -> bool:
    return any(f.path in names for f in files)


async def config_at(
    adapter: SourceAdapter, commit: str, names: tuple[str, ...], in_effect: PathRules | None
) -> ConfigFound:
    """What the config file is at `commit`; `in_effect` are the rules the documents were written with.
    SourceError when the source cannot be read (the job fails, as any listing failure does)."""
    for name in names:
        found = await adapter.read_file(commit, name, config_file.MAX_CONFIG_BYTES)
        if found.problem is not None:
            return config_file.refused(name, f"{name}: {found.problem}", in_effect)
        if found.content is not None:
            return config_file.parse(name, found.content, in_effect)
    return ConfigFound(status=UNCONFIGURED)
