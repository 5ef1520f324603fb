"""The pure parts of `hookstream sources` / `syncs` / `sync request`: ids, events, formatting."""

from __future__ import annotations

import argparse
from datetime import UTC
from pathlib import Path

import pytest

from app.cli.common import CliError
from app.cli.sources import connected_event, default_git_id
from app.cli.syncs import format_bytes, format_duration, requested_event
from app.cli.text import format_table


@pytest.mark.parametrize(
    "root, expected",
    [
        ("/src/app", "git:app"),
        ("/mirrors/app.git", "git:app"),
        ("/x/.git", "git:.git"),
        ("/x/a.b", "git:a.b"),
    ],
)
def test_a_git_source_id_defaults_to_the_repository_directory_name(root, expected):
    assert default_git_id(Path(root)) == expected


@pytest.mark.parametrize(
    "ms, text",
    [
        (None, "-"),
        (0, "0ms"),
        (999, "999ms"),
        (1000, "1.0s"),
        (59_940, "59.9s"),
        (61_000, "1m01s"),
        (3_600_000, "1h00m"),
        (3_725_000, "1h02m"),
    ],
)
def test_durations_read_at_a_glance(ms, text):
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    "n, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3072.0 GiB")]
)
def test_byte_counts_read_at_a_glance(n, text):
    assert format_bytes(n) == text


def test_a_table_aligns_columns_and_leaves_the_last_one_ragged():
    assert format_table(("A", "BB", "C"), [("xxx", "y", "long last"), ("", "zz", "")]).splitlines() == [
        "A    BB  C",
        "xxx  y   long last",
        "     zz",
    ]


def _connect_args(**kw) -> argparse.Namespace:
    values = dict(
        source_type="github",
        path=None,
        repository="octo/app",
        installation_id=9,
        branch=None,
        repository_id=None,
        source_id=None,
        name=None,
        organization_id=None,
        teams=None,
        token_env=None,
        config_files=None,
    )
    return argparse.Namespace(**{**values, **kw})


@pytest.mark.parametrize(
    "kw, source_id",
    [
        ({}, "github:octo/app"),
        ({"repository_id": 42}, "github:42"),
        ({"repository_id": 42, "source_id": "mine"}, "mine"),
    ],
)
def test_a_github_source_id_prefers_the_given_id_then_the_repository_id(kw, source_id):
    event, _ = connected_event(_connect_args(**kw))
    assert (event.source_id, event.name, event.config) == (
        source_id,
        "octo/app",
        {"repository": "octo/app", "installation_id": 9},
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"installation_id": None}, "needs --repository OWNER/NAME and --installation-id N"),
        ({"repository": "octo"}, "expected OWNER/NAME"),
        ({"path": Path("/tmp")}, "--path is for --type git"),
        ({"source_id": "x" * 301}, "not a valid source: source_id"),
    ],
)
def test_a_github_source_needs_a_repository_and_an_installation(kw, message):
    with pytest.raises(CliError) as raised:
        connected_event(_connect_args(**kw))
    assert message in str(raised.value) and raised.value.code == 2


ORG = "8a5f2c3e-7b1d-4e9a-b6c0-1d2e3f4a5b6c"


def _linear_args(**kw) -> argparse.Namespace:
    return _connect_args(
        **{"source_type": "linear", "repository": None, "installation_id": None, "organization_id": ORG, **kw}
    )


@pytest.mark.parametrize(
    "kw, source_id, name, config",
    [
        ({}, f"linear:{ORG}", "Linear", {"organization_id": ORG}),
        (
            {"teams": ["ops", "ENG", "ENG"]},
            f"linear:{ORG}",
            "Linear ENG, OPS",
            {"organization_id": ORG, "teams": ["ENG", "OPS"]},
        ),
        (
            {"token_env": "LINEAR_KEY_ACME", "source_id": "mine", "name": "Acme"},
            "mine",
            "Acme",
            {"organization_id": ORG, "token_env": "LINEAR_KEY_ACME"},
        ),
    ],
)
def test_a_linear_source_is_the_workspace_its_webhooks_name(kw, source_id, name, config):
    event, notes = connected_event(_linear_args(**kw))
    assert (event.source_id, event.source_type, event.name, event.config, notes) == (
        source_id,
        "linear",
        name,
        config,
        [],
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"organization_id": None}, "--type linear needs --organization-id"),
        ({"organization_id": "../x"}, "--type linear needs --organization-id"),
        ({"teams": ["E-NG"]}, "--team 'E-NG'"),
        ({"token_env": "HOOKSTREAM_DATABASE_URL"}, "reads only LINEAR_* or HOOKSTREAM_LINEAR_* variables"),
        ({"repository": "octo/app"}, "--repository is not for --type linear"),
    ],
)
def test_a_linear_source_needs_an_organization_and_refuses_other_types_options(kw, message):
    with pytest.raises(CliError) as raised:
        connected_event(_linear_args(**kw))
    assert message in str(raised.value) and raised.value.code == 2


def test_config_file_names_travel_in_the_source_config_checked():
    event, _ = connected_event(_connect_args(config_files=["docs/hookstream.yml", ".hookstream.yml"]))
    assert event.config["config_files"] == ["docs/hookstream.yml", ".hookstream.yml"]
    with pytest.raises(CliError, match="--config-file: .*'../up.yml' is not a path relative to the repository root"):
        connected_event(_connect_args(config_files=["../up.yml"]))
    with pytest.raises(CliError, match="--config-file is not for --type linear"):
        connected_event(_linear_args(config_files=["x.yml"]))


def config_row(status, path=".hookstream.yml", error=None, rules=None):
    from datetime import datetime

    from app.core.read_model import SourceRow

    return SourceRow(
        source_id="git:a",
        source_type="git",
        name="a",
        status="connected",
        config={"path": "/a"},
        config_status=status,
        config_path=path,
        config_commit="0123456789abcdef" if status else None,
        status_reason=None,
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
        config_error=error,
        config_rules=rules,
    )


@pytest.mark.parametrize(
    "row, shown",
    [
        (config_row(None, path=None), "-"),
        (
            config_row("configured", rules={"include": ["docs/**"], "exclude": ["a", "b"]}),
            "configured: .hookstream.yml at 0123456789ab (1 include, 2 exclude)",
        ),
        (config_row("unconfigured", path=None, rules={"include": [], "exclude": []}), "unconfigured at 0123456789ab"),
        (
            config_row(
                "invalid",
                error=".hookstream.yml: line 2, column 1: expected ','",
                rules={"include": [], "exclude": ["**"]},
            ),
            "invalid: .hookstream.yml at 0123456789ab: line 2, column 1: expected ','",
        ),
    ],
)
def test_the_config_file_column_says_what_the_worker_read(row, shown):
    from app.cli.sources import config_file_summary

    assert config_file_summary(row) == shown


def test_linear_options_are_refused_for_other_types():
    with pytest.raises(CliError, match="--team is for --type linear"):
        connected_event(_connect_args(teams=["ENG"]))


def _request_args(**kw) -> argparse.Namespace:
    values = dict(
        source_id="git:app",
        full=False,
        paths=[],
        before=None,
        after=None,
        trigger="manual",
        request_id=None,
        force=False,
    )
    return argparse.Namespace(**{**values, **kw})


def test_each_request_gets_a_fresh_id_unless_one_is_given():
    first, second = requested_event(_request_args()), requested_event(_request_args())
    assert first.request_id != second.request_id and first.request_id.startswith("cli-")
    assert requested_event(_request_args(request_id="mine")).request_id == "mine"
    assert (first.mode, requested_event(_request_args(full=True)).mode) == ("incremental", "full")


def test_a_request_with_an_empty_trigger_is_refused_with_the_field():
    with pytest.raises(CliError) as raised:
        requested_event(_request_args(trigger=""))
    assert "not a valid request: trigger" in str(raised.value)


def test_a_git_command_that_hangs_is_a_cli_error(tmp_path):
    import os
    import subprocess

    from app.cli.sources import _git

    # A real git blocked on a real file: .git/HEAD is a FIFO nobody writes, so reading it never ends.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".git" / "HEAD").unlink()
    os.mkfifo(tmp_path / ".git" / "HEAD")
    with pytest.raises(CliError, match=r"`git rev-parse --is-bare-repository` did not finish within 0.5s") as caught:
        _git(tmp_path, "rev-parse", "--is-bare-repository", timeout=0.5)
    assert str(tmp_path) in str(caught.value)
