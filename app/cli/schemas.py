"""`hookstream schemas export [--check]`: JSON Schema files for producers in other languages,
and `hookstream.config.json`, the schema of a repository's `.hookstream.yml`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.cli.common import fail
from app.core.config_file import RepositoryConfig
from app.events import ALL_MODELS
from app.settings import REPO_ROOT

SCHEMAS_DIR = REPO_ROOT / "schemas"
EXPORT_COMMAND = "hookstream schemas export"
CONFIG_SCHEMA = "hookstream.config.json"


def rendered() -> dict[str, str]:
    """File name -> JSON text, one file per record type, deterministic."""
    files: dict[str, str] = {}
    for model in ALL_MODELS:
        record_type = model.model_fields["type"].default
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://hookstream.dev/schemas/{record_type}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"{record_type}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    # Not a record: the config file a repository source carries (.hookstream.yml), for editors and CI.
    schema = RepositoryConfig.model_json_schema(mode="validation")
    schema["$id"] = f"https://hookstream.dev/schemas/{CONFIG_SCHEMA}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    files[CONFIG_SCHEMA] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def drift(directory: Path = SCHEMAS_DIR) -> list[str]:
    """Names of files that are missing, stale or extra in `directory`."""
    want = rendered()
    have = {p.name for p in directory.glob("*.json")} if directory.exists() else set()
    problems = [n for n, text in want.items() if not (directory / n).exists() or (directory / n).read_text() != text]
    problems += sorted(have - set(want))
    return sorted(problems)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schemas", help="JSON Schemas of the wire models")
    ssub = p.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    e = ssub.add_parser(
        "export", help="write schemas/*.json from app/events", description="Write one JSON Schema per record type."
    )
    e.add_argument("--dir", type=Path, default=SCHEMAS_DIR, help="target directory (default: the repo's schemas/)")
    e.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files drift from the models")
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if args.check:
        stale = drift(args.dir)
        if stale:
            fail(f"schemas drift from app/events: {', '.join(stale)}; run: {EXPORT_COMMAND}")
        print("schemas match the models")
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    want = rendered()
    for name, text in want.items():
        (args.dir / name).write_text(text)
    for extra in set(p.name for p in args.dir.glob("*.json")) - set(want):
        (args.dir / extra).unlink()
    print(f"wrote {len(want)} schemas to {args.dir}")
    return 0
