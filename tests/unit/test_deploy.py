"""docker-compose.yml must stay runnable: valid YAML, real settings, real commands.

There is no Docker engine on these machines, so `docker compose config` cannot
run here; this checks what it would, plus that the file matches the code.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from app.cli.main import build_parser
from app.settings import REPO_ROOT, Settings, load_instances

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_has_broker_database_setup_ingress_and_worker():
    assert {"kafka", "postgres", "setup", "ingress", "worker"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft


def test_every_hookstream_variable_in_compose_is_a_real_setting():
    fields = {f"HOOKSTREAM_{name.upper()}" for name in Settings.model_fields}
    for name, service in COMPOSE["services"].items():
        env = service.get("environment") or {}
        for var in env:
            if var.startswith("HOOKSTREAM_"):
                assert var in fields, f"{name}: {var} is not a setting"


def test_every_hookstream_command_in_compose_parses():
    parser = build_parser()
    for name in ("ingress", "worker"):
        parser.parse_args(COMPOSE["services"][name]["command"])
    setup = COMPOSE["services"]["setup"]["entrypoint"][-1]
    for part in setup.split("&&"):
        words = part.split()
        assert words[0] == "hookstream"
        parser.parse_args(words[1:])


def test_the_deploy_instances_file_is_valid():
    instances = load_instances(REPO_ROOT / "deploy" / "instances.toml", env={"GITHUB_WEBHOOK_SECRET": "x"})
    assert ("github", "main") in instances


def test_the_dev_defaults_are_valid():
    from app.cli.dev import DEFAULT_INSTANCES

    assert len(load_instances(Path(DEFAULT_INSTANCES))) == 4
