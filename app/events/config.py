"""A source's config file as the planner found it, carried by `PlanRequested` and `SyncPlanned`.

The file itself (`.hookstream.yml`) is read by the worker at the commit a job
converges to (`app.sync.config_detection`); its schema is
`app.core.config_file.RepositoryConfig`. What travels on the topics is the
outcome: the status, the path read, the parse error, and the path rules the job
applied (`PathRules`; glob semantics in `app.core.path_rules`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The config statuses, shared by the fold's state and the `sources` read model: `configured`
# (a valid file at the commit, `path` says which), `unconfigured` (no config file at the
# commit, including after a push that removed it) or `invalid` (`error` says why). A source
# no planner has looked at yet has none (the fold says "unknown", the read model NULL).
ConfigStatus = Literal["configured", "unconfigured", "invalid"]
CONFIGURED: ConfigStatus = "configured"
UNCONFIGURED: ConfigStatus = "unconfigured"
INVALID: ConfigStatus = "invalid"

# The rules travel in every plan request and plan, and live in the source's state: at most
# 2 x 100 x 256 characters (about 52 KB), so a plan stays small beside the state's bound.
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 256
Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH)]


class PathRules(BaseModel):
    """Which paths a sync writes: those matching an `include` glob (every path when there is
    none) and no `exclude` glob. `PathRules()` is everything, `NOTHING` nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    include: tuple[Pattern, ...] = Field(default=(), max_length=MAX_PATTERNS)
    exclude: tuple[Pattern, ...] = Field(default=(), max_length=MAX_PATTERNS)


EVERYTHING = PathRules()
# What a source whose config is invalid writes when no valid config was ever applied to it.
NOTHING = PathRules(exclude=("**",))


class ConfigFound(BaseModel):
    """The config file at a job's commit (`status`, `path`, `error`), and the rules the job applied.

    `rules` are the file's for `configured`, everything for `unconfigured`, and for
    `invalid` the rules in effect before (those the documents were written with), or
    nothing when the source never had any: a broken file neither widens what is
    written nor stops the source's other changes from syncing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: ConfigStatus
    path: str | None = Field(default=None, max_length=1000)
    error: str | None = Field(default=None, max_length=2000)
    rules: PathRules = EVERYTHING
