"""Where git sources may live: HOOKSTREAM_GIT_ROOTS.

A git source's path comes from a producer event (`POST /events`, the control
topic), so without a bound a producer could point the worker at any directory
on its machine. With roots configured, a path is accepted only when, after
resolving symlinks and `..`, it is one of the roots or lies under one. The
check runs where a source is connected (the ingress, `hookstream sources
connect`) and again where it is read (the git adapter), since a symlink can
change in between. No roots: every path is allowed (the development default).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from app.sources.base import SourceError


class PathOutsideRoots(SourceError):
    """A git source path that HOOKSTREAM_GIT_ROOTS does not allow; the message names the roots."""


def check_git_path(path: str, roots: Sequence[str]) -> str:
    """`path` with symlinks resolved when it lies under one of `roots`; raises PathOutsideRoots otherwise.

    With no roots, `path` is returned unchanged.
    """
    if not roots:
        return path
    allowed = f"HOOKSTREAM_GIT_ROOTS allows only paths under {', '.join(roots)}"
    if not os.path.isabs(path):
        raise PathOutsideRoots(f"git source path {path!r} is not absolute; {allowed}")
    try:
        real = os.path.realpath(path)
    except (ValueError, OSError) as exc:  # a NUL byte, a symlink loop
        raise PathOutsideRoots(f"git source path {path!r} cannot be resolved ({exc}); {allowed}") from None
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return real
    shown = f" (resolves to {real})" if real != os.path.normpath(path) else ""
    raise PathOutsideRoots(f"git source path {path!r}{shown} is outside the allowed roots; {allowed}")
