"""`hookstream sources connect | disconnect | list`: register sources and see them.

`connect` and `disconnect` send a `SourceConnected` / `SourceDisconnected` to
`hookstream.sync.control`, keyed by the source id: straight to Kafka by default
(acks=all), or through the ingress's `POST /events` with `--ingress` / `--url`.
Either way the event is validated here first. `list` reads the `sources`
projection, which the worker writes once it has consumed the event.

The helpers at the bottom (sending a producer event and saying where it went)
are shared with `app.cli.syncs`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from app.cli.common import CliError, load_settings, on_read_model, one_line, positive_int, run
from app.cli.text import format_table, format_time
from app.core import read_model
from app.core.config_file import config_files
from app.events import SourceConnected, SourceDisconnected, utcnow
from app.events.config import INVALID, UNCONFIGURED
from app.settings import Settings

_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_ORGANIZATION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_TEAM = re.compile(r"^[A-Za-z0-9_]{1,16}$")
_TOKEN_ENV = re.compile(r"^(HOOKSTREAM_)?LINEAR_[A-Z0-9_]{1,100}$")
SOURCE_TYPES = ("git", "github", "linear")
STATUSES = ("connected", "disconnected", "all")

CONNECT_EPILOG = """\
examples:
  hookstream sources connect --type git --path ~/src/app
      a local repository; its id is git:app, its branch HEAD
  hookstream sources connect --type git --path /mirrors/app.git --branch main --repository-id 4242
      a local mirror that GitHub pushes for repository 4242 drive (id github:4242)
  hookstream sources connect --type github --repository octo/app --installation-id 99 --repository-id 4242
      a GitHub repository through the GitHub App installation 99 (id github:4242)
  hookstream sources connect --type linear --organization-id 8a5f2c3e-... --team ENG --team OPS
      the issues of two teams of a Linear workspace (id linear:8a5f2c3e-..., the id its
      Issue and Comment webhooks sync); the worker reads them with HOOKSTREAM_LINEAR_API_KEY,
      or with the key in the worker's environment variable named by --token-env

With HOOKSTREAM_GIT_ROOTS set (directories separated by ":"), a git repository
must lie under one of them once symlinks are resolved; the ingress and the
worker check the same. Unset, any path is allowed.

The event goes straight to Kafka (HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS) unless
--ingress or --url sends it through POST /events (HOOKSTREAM_EVENTS_TOKEN).
The source shows in `hookstream sources list` once the worker has consumed it.
"""

DISCONNECT_EPILOG = """\
Disconnecting cancels the source's running sync (it completes `cancelled` with
its partial counts) and drops its queued one; later requests are rejected until
the source is connected again.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sources",
        help="connect, disconnect and list sources",
        description="Sources are the repositories hookstream syncs into documents. They are registered by "
        "SourceConnected events (from GitHub installation webhooks, or `sources connect`).",
    )
    ssub = p.add_subparsers(dest="sources_command", metavar="ACTION", required=True)

    c = ssub.add_parser(
        "connect",
        help="connect a git repository, a GitHub repository or a Linear workspace as a source",
        description="Send a SourceConnected for a local git repository (--type git --path), a\n"
        "GitHub repository (--type github --repository --installation-id) or a Linear workspace's\n"
        "issues (--type linear --organization-id). Connecting an id that is already connected\n"
        "replaces its type and configuration.",
        epilog=CONNECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--type", required=True, choices=SOURCE_TYPES, dest="source_type", help="the source adapter")
    c.add_argument(
        "--path",
        type=Path,
        metavar="REPO",
        help="git: the repository (a work tree or a bare repository), stored as an absolute path; "
        "the worker reads it, so it must be the same path there",
    )
    c.add_argument("--repository", metavar="OWNER/NAME", help="github: the repository")
    c.add_argument(
        "--installation-id",
        type=positive_int,
        metavar="N",
        help="github: the GitHub App installation that can read the repository",
    )
    c.add_argument(
        "--branch",
        help="the branch the source tracks: its documents follow this branch's head, and "
        "pushes to other branches are ignored by a counted rule (default: git, HEAD's branch; "
        "github, the repository's default branch); connecting again with another branch is a "
        "config change: the next sync lists every file",
    )
    c.add_argument(
        "--config-file",
        dest="config_files",
        action="append",
        metavar="PATH",
        help="git, github: the source's config file, relative to the repository root; repeat for "
        "several, the first found at a commit is read (default: .hookstream.yml, then .hookstream.yaml). "
        "Its include/exclude globs decide which paths are written (see the README)",
    )
    c.add_argument(
        "--repository-id",
        type=positive_int,
        metavar="N",
        help="the GitHub repository id: makes the source id github:N, the id GitHub webhooks "
        "(pushes, installations) use for that repository",
    )
    c.add_argument(
        "--organization-id",
        metavar="ID",
        help="linear: the workspace's organization id (Linear's webhooks carry it as organizationId; "
        "the API key must belong to it)",
    )
    c.add_argument(
        "--team",
        dest="teams",
        action="append",
        metavar="KEY",
        help="linear: a team key (e.g. ENG) whose issues to sync; repeat for several (default: every team)",
    )
    c.add_argument(
        "--token-env",
        metavar="NAME",
        help="linear: the worker's environment variable (LINEAR_* or HOOKSTREAM_LINEAR_*) holding this "
        "source's API key or OAuth token (default: HOOKSTREAM_LINEAR_API_KEY); the key itself never "
        "travels in the event",
    )
    c.add_argument(
        "--id",
        dest="source_id",
        metavar="ID",
        help="the source id (default: git:<directory name>; github:N with --repository-id, "
        "else github:OWNER/NAME; linear:<organization id>)",
    )
    c.add_argument("--name", help="a display name (default: the directory name, OWNER/NAME, or the team keys)")
    add_transport_arguments(c)
    c.set_defaults(func=cmd_connect)

    d = ssub.add_parser(
        "disconnect",
        help="disconnect a source (cancels its running sync)",
        description="Send a SourceDisconnected for source ID.",
        epilog=DISCONNECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("source_id", metavar="ID", help="the source id (see `hookstream sources list`)")
    d.add_argument("--reason", default="manual", help="why, as the cancelled sync's error will say (default: manual)")
    add_transport_arguments(d)
    d.set_defaults(func=cmd_disconnect)

    ls = ssub.add_parser(
        "list",
        help="list sources from the read model",
        description="List sources as projected into PostgreSQL (the `sources` table), by id.\n\n"
        "CONFIG FILE is what the worker read in the source's config file (.hookstream.yml) at the\n"
        "commit it last synced: `configured: PATH at COMMIT (N include, M exclude)`, `unconfigured at\n"
        "COMMIT` (none: every path is written), `invalid: PATH at COMMIT: ERROR` (the include/exclude\n"
        "in effect before are kept, or nothing is written if there were none), or `-` (not read yet;\n"
        "linear sources have no config file). --json has the rules in effect (config_rules).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("--status", choices=STATUSES, default="all", help="connected, disconnected or all (default)")
    ls.add_argument("--type", dest="source_type", choices=SOURCE_TYPES, help="only sources of this type")
    ls.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    ls.set_defaults(func=cmd_list)


# --- connect -----------------------------------------------------------------------------------


GIT_TIMEOUT = 30.0  # seconds for one git command run to check a repository


def _git(path: Path, *args: str, timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, env=env, timeout=timeout)
    except FileNotFoundError:
        raise CliError("the git executable was not found: install git to connect a git source", 2) from None
    except subprocess.TimeoutExpired as exc:
        raise CliError(
            f"{path}: `git {' '.join(args)}` did not finish within {exc.timeout:g}s "
            "(a repository on a slow or hung file system?)"
        ) from None


def git_repository(path: Path, branch: str | None) -> tuple[Path, list[str]]:
    """The repository's absolute root (the work tree's top level, or the bare repository itself)
    and notes for the user; a CliError that says what is wrong when `path` is not a usable repository."""
    path = path.expanduser()
    if not path.exists():
        raise CliError(f"{path}: no such directory", 2)
    if not path.is_dir():
        raise CliError(f"{path}: not a directory (give the repository's directory)", 2)
    bare = _git(path, "rev-parse", "--is-bare-repository")
    if bare.returncode != 0:
        detail = bare.stderr.strip().splitlines()[-1] if bare.stderr.strip() else "git rev-parse failed"
        raise CliError(f"{path} is not a git repository ({detail})", 2)
    where = _git(path, "rev-parse", "--absolute-git-dir" if bare.stdout.strip() == "true" else "--show-toplevel")
    if where.returncode != 0:
        raise CliError(f"{path}: cannot find the repository's root: {where.stderr.strip()}", 2)
    root = Path(where.stdout.strip())
    notes = []
    if root != path.resolve():
        notes.append(f"using the repository's root {root}")
    ref = branch or "HEAD"
    if ref.startswith("-") or _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        if branch is not None:
            heads = _git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads").stdout.split()
            raise CliError(f"{branch!r} is not a branch of {root} (branches: {', '.join(heads) or 'none'})", 2)
        notes.append(f"{root} has no commits yet: its syncs fail until it has one")
    return root, notes


def default_git_id(root: Path) -> str:
    name = root.name[:-4] if root.name.endswith(".git") and len(root.name) > 4 else root.name
    return f"git:{name}"


def connected_event(args: argparse.Namespace) -> tuple[SourceConnected, list[str]]:
    """The SourceConnected the arguments describe, and notes for the user."""
    notes: list[str] = []
    linear_only = [
        flag
        for flag, value in (
            ("--organization-id", args.organization_id),
            ("--team", args.teams),
            ("--token-env", args.token_env),
        )
        if value
    ]
    if args.source_type != "linear" and linear_only:
        raise CliError(f"{linear_only[0]} is for --type linear", 2)
    if args.source_type == "git":
        if args.path is None:
            raise CliError("--type git needs --path REPO", 2)
        if args.repository or args.installation_id:
            raise CliError("--repository and --installation-id are for --type github", 2)
        root, notes = git_repository(args.path, args.branch)
        config: dict[str, Any] = {"path": str(root)}
        default_id, default_name = default_git_id(root), default_git_id(root).removeprefix("git:")
    elif args.source_type == "linear":
        config, default_id, default_name = linear_config(args)
    else:
        if args.path is not None:
            raise CliError("--path is for --type git", 2)
        if not args.repository or args.installation_id is None:
            raise CliError("--type github needs --repository OWNER/NAME and --installation-id N", 2)
        if not _REPOSITORY.match(args.repository):
            raise CliError(f"--repository {args.repository!r}: expected OWNER/NAME", 2)
        config = {"repository": args.repository, "installation_id": args.installation_id}
        default_id, default_name = f"github:{args.repository}", args.repository
        if args.repository_id is None and args.source_id is None:
            notes.append(
                f"the id is {default_id}; GitHub webhooks for this repository use github:<repository id>: "
                "give --repository-id so that its pushes reach this source"
            )
    if args.branch:
        config["branch"] = args.branch
    if args.config_files:
        try:
            config["config_files"] = list(config_files({"config_files": args.config_files}))
        except ValueError as exc:
            raise CliError(f"--config-file: {exc}", 2) from None
    if args.repository_id is not None:
        default_id = f"github:{args.repository_id}"
    try:
        event = SourceConnected(
            source_id=args.source_id or default_id,
            occurred_at=utcnow(),
            source_type=args.source_type,
            name=args.name or default_name,
            config=config,
        )
    except ValidationError as exc:
        raise CliError(f"not a valid source: {first_error(exc)}", 2) from None
    return event, notes


def linear_config(args: argparse.Namespace) -> tuple[dict[str, Any], str, str]:
    """(config, default id, default name) of a Linear source; a CliError that says what is wrong."""
    from app.plugins.linear import source_id_for

    others = [
        flag
        for flag, value in (
            ("--path", args.path),
            ("--repository", args.repository),
            ("--installation-id", args.installation_id),
            ("--branch", args.branch),
            ("--repository-id", args.repository_id),
            ("--config-file", args.config_files),
        )
        if value is not None
    ]
    if others:
        raise CliError(f"{others[0]} is not for --type linear", 2)
    if not args.organization_id or not _ORGANIZATION.match(args.organization_id):
        raise CliError(
            "--type linear needs --organization-id ID (letters, digits and '-': Linear's organization id)", 2
        )
    teams = [t.upper() for t in args.teams or []]
    bad = [t for t in teams if not _TEAM.match(t)]
    if bad:
        raise CliError(f"--team {bad[0]!r}: a Linear team key is letters, digits or '_' (e.g. ENG)", 2)
    config: dict[str, Any] = {"organization_id": args.organization_id}
    if teams:
        config["teams"] = sorted(set(teams))
    if args.token_env:
        if not _TOKEN_ENV.match(args.token_env):
            raise CliError(
                f"--token-env {args.token_env!r}: the worker reads only LINEAR_* or HOOKSTREAM_LINEAR_* variables", 2
            )
        config["token_env"] = args.token_env
    name = f"Linear {', '.join(config['teams'])}" if teams else "Linear"
    return config, source_id_for(args.organization_id), name


def cmd_connect(args: argparse.Namespace) -> int:
    event, notes = connected_event(args)
    settings = load_settings()
    if event.source_type == "git":
        from app.sources.roots import PathOutsideRoots, check_git_path

        try:
            check_git_path(event.config["path"], settings.git_root_paths())
        except PathOutsideRoots as exc:
            raise CliError(str(exc), 2) from None
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    answer = send_producer_event(settings, event, args)
    if args.json:
        print(orjson.dumps({**answer, "source_id": event.source_id, "config": event.config}).decode())
        return 0
    print(f"connected {event.source_id} ({event.source_type} {_location(event.config)}): {describe_sent(answer)}")
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    try:
        event = SourceDisconnected(source_id=args.source_id, occurred_at=utcnow(), reason=args.reason)
    except ValidationError as exc:
        raise CliError(f"not a valid source id: {first_error(exc)}", 2) from None
    settings = load_settings()
    answer = send_producer_event(settings, event, args)
    if args.json:
        print(orjson.dumps({**answer, "source_id": event.source_id}).decode())
        return 0
    print(f"disconnected {event.source_id} (reason: {event.reason}): {describe_sent(answer)}")
    return 0


def first_error(exc: ValidationError) -> str:
    """The first error, with a broken pattern said in words (app.codec), never the value given."""
    from app import codec

    err = codec.decode_error(exc).errors[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"


# --- list --------------------------------------------------------------------------------------


def _location(config: dict[str, Any]) -> str:
    where = config.get("path") or config.get("repository") or _linear_location(config) or "-"
    return f"{where}@{config['branch']}" if config.get("branch") else str(where)


def _linear_location(config: dict[str, Any]) -> str | None:
    if not config.get("organization_id"):
        return None
    teams = config.get("teams") or []
    return f"linear {config['organization_id']}" + (f" ({', '.join(teams)})" if teams else "")


def config_file_summary(row: read_model.SourceRow) -> str:
    """The CONFIG FILE column: what the worker last read at the commit it synced.

    `-` (not read yet, or a source without config files), `configured: PATH at COMMIT (N include,
    M exclude)`, `unconfigured at COMMIT` (no config file: every path is written), or
    `invalid: PATH at COMMIT: ERROR` (the rules in effect before are kept; `--json` has them).
    """
    if row.config_status is None:
        return "-"
    at = f" at {row.config_commit[:12]}" if row.config_commit else ""
    if row.config_status == UNCONFIGURED:
        return f"unconfigured{at}"
    if row.config_status == INVALID:
        error = (row.config_error or "no error recorded").removeprefix(f"{row.config_path}: ")
        return f"invalid: {row.config_path}{at}: {one_line(error, 100)}"
    rules = row.config_rules or {}
    counts = f" ({len(rules.get('include') or [])} include, {len(rules.get('exclude') or [])} exclude)"
    return f"{row.config_status}: {row.config_path}{at}{counts}"


def source_summary(row: read_model.SourceRow) -> dict[str, Any]:
    values = read_model.source_to_columns(row)
    values["updated_at"] = row.updated_at.isoformat()
    return values


def cmd_list(args: argparse.Namespace) -> int:
    from app.store import sources as source_rows

    settings = load_settings()
    status = None if args.status == "all" else args.status
    sources = run(on_read_model(settings, lambda conn: source_rows.listing(conn, status, args.source_type or None)))
    if args.json:
        print(orjson.dumps([source_summary(s) for s in sources], option=orjson.OPT_INDENT_2).decode())
        return 0
    if not sources:
        print(
            "no sources"
            + ("" if status is None and not args.source_type else " match")
            + " (connect one with `hookstream sources connect`)"
        )
        return 0
    header = ("ID", "TYPE", "STATUS", "NAME", "LOCATION", "CONFIG FILE", "UPDATED")
    lines = [
        (
            s.source_id,
            s.source_type,
            s.status + (f" ({s.status_reason})" if s.status_reason and s.status != read_model.CONNECTED else ""),
            s.name or "-",
            _location(s.config),
            config_file_summary(s),
            format_time(s.updated_at),
        )
        for s in sources
    ]
    print(format_table(header, lines))
    return 0


# --- shared with app.cli.syncs -----------------------------------------------------------------


def add_transport_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--kafka", action="store_true", help="produce to hookstream.sync.control directly, acks=all (the default)"
    )
    where.add_argument(
        "--ingress",
        action="store_true",
        help="post to the configured ingress's POST /events (HOOKSTREAM_INGRESS_HOST/PORT, "
        "with HOOKSTREAM_EVENTS_TOKEN)",
    )
    where.add_argument(
        "--url", help="post to POST /events of the ingress at this base URL (with HOOKSTREAM_EVENTS_TOKEN)"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def send_producer_event(settings: Settings, event: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Send a producer event the way the arguments say (`add_transport_arguments`); where it went."""
    from app import codec
    from app.cli.send import ingress_url, post_event, produce_event

    if not (args.ingress or args.url):
        return {"via": "kafka", **produce_event(settings, event)}
    body = post_event(settings, args.url, codec.encode(event))
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = {"answer": body.decode("utf-8", "replace")}
    return {"via": "ingress", "url": ingress_url(settings, args.url) + "/events", **answer}


def describe_sent(answer: dict[str, Any]) -> str:
    if answer.get("via") == "kafka":
        return f"{answer['type']} written to {answer['topic']}[{answer['partition']}]@{answer['offset']}"
    return f"{answer.get('type', 'the event')} accepted by the ingress at {answer['url']}"
