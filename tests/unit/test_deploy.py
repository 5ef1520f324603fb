"""docker-compose.yml must stay runnable: valid against the Compose Specification, real settings,
real commands, and the properties production needs.

There is no Docker engine on these machines, so `docker compose config` cannot run here.
The file is validated by PyPI's compose-spec (the Rust compose_spec parser, which refuses
unknown keys, and its pydantic models generated from the specification's JSON schema),
as written and with deploy/kraft3.env's variables substituted as Compose would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from compose_spec import PyOptions
from compose_spec.models import ComposeSpecification

from app import topology
from app.cli.main import build_parser
from app.instances import load_instances
from app.settings import REPO_ROOT, Settings

COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
KRAFT3_ENV = dict(
    line.split("=", 1)
    for line in (REPO_ROOT / "deploy" / "kraft3.env").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|-|:\?|\?)(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""

    def value(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op in (":-", ":?") and not env.get(name):
            if op == ":?":
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return arg
        if op == "-" and name not in env:
            return arg
        return env.get(name, "")

    return _VARIABLE.sub(value, text)


def resolved(env: dict[str, str]) -> dict:
    """The compose file as Compose sees it with `env`, and only the services its profiles enable."""
    compose = yaml.safe_load(interpolate(COMPOSE_TEXT, env))
    active = set(env.get("COMPOSE_PROFILES", "").split(",")) - {""}
    compose["services"] = {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") or active & set(service["profiles"])
    }
    return compose


SINGLE = resolved({"HOOKSTREAM_EVENTS_TOKEN": "t", "GRAFANA_ADMIN_PASSWORD": "g"})
KRAFT3 = resolved({"HOOKSTREAM_EVENTS_TOKEN": "t", "GRAFANA_ADMIN_PASSWORD": "g", **KRAFT3_ENV})


def _workers(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("command") == ["worker"]}


@pytest.mark.parametrize(
    "text",
    [
        COMPOSE_TEXT,
        interpolate(COMPOSE_TEXT, {"HOOKSTREAM_EVENTS_TOKEN": "t", "GRAFANA_ADMIN_PASSWORD": "g"}),
        interpolate(COMPOSE_TEXT, {"HOOKSTREAM_EVENTS_TOKEN": "t", "GRAFANA_ADMIN_PASSWORD": "g", **KRAFT3_ENV}),
    ],
    ids=["as-written", "single", "kraft3"],
)
def test_compose_is_valid_against_the_compose_specification(text):
    PyOptions(apply_merge=True).from_yaml(text).validate()
    ComposeSpecification.model_validate(yaml.safe_load(text))


def test_the_validation_refuses_what_docker_compose_would():
    broken = COMPOSE_TEXT.replace(
        '    healthcheck:\n      test: ["CMD-SHELL", "pg_isready',
        '    healtcheck:\n      test: ["CMD-SHELL", "pg_isready',
    )
    assert broken != COMPOSE_TEXT
    with pytest.raises(ValueError, match="healtcheck"):
        PyOptions(apply_merge=True).from_yaml(broken).validate()


def test_compose_has_broker_database_setup_ingress_and_workers():
    assert {"kafka", "postgres", "setup", "ingress", "worker-1", "worker-2"} <= set(SINGLE["services"])
    assert SINGLE["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert not {"kafka-2", "kafka-3"} & set(SINGLE["services"])  # the three-node profile is opt-in


@pytest.mark.parametrize("compose", [SINGLE, KRAFT3], ids=["single", "kraft3"])
def test_no_state_volume_is_shared_by_two_workers(compose):
    workers = _workers(compose)
    assert len(workers) >= 2
    owners: dict[str, str] = {}
    for name, service in workers.items():
        assert "deploy" not in service and "scale" not in service, f"{name}: replicas would share its volume"
        data_dir = service["environment"]["HOOKSTREAM_WORKER_DATA_DIR"]
        state = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == data_dir]
        assert len(state) == 1 and state[0] in compose["volumes"], f"{name}: no named volume at {data_dir}"
        for volume in service["volumes"]:
            source, _, rest = volume.partition(":")
            if rest.endswith(":ro"):
                continue  # read-only configuration, not state
            assert source not in owners, f"{source} is mounted by {owners.get(source)} and {name}"
            owners[source] = name


def test_the_workers_web_is_bound_on_the_compose_network_and_not_published():
    assert Settings.model_fields["worker_web_host"].default == "127.0.0.1"  # the code's default stays local
    for name, service in _workers(SINGLE).items():
        assert "ports" not in service, f"{name} publishes its web server to the host"
        assert service["environment"]["HOOKSTREAM_WORKER_WEB_HOST"] == "0.0.0.0", name  # inside its container
        assert service["expose"] == [service["environment"]["HOOKSTREAM_WORKER_WEB_PORT"]]


def test_the_kraft3_profile_runs_three_brokers_with_replication_3_and_min_insync_2():
    kafkas = {n: s for n, s in KRAFT3["services"].items() if s.get("image", "").startswith("apache/kafka")}
    assert len(kafkas) == 3
    envs = [s["environment"] for s in kafkas.values()]
    assert sorted(e["KAFKA_NODE_ID"] for e in envs) == ["1", "2", "3"]
    assert {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs} == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    for env in envs:
        assert (
            str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "3" and str(env["KAFKA_MIN_INSYNC_REPLICAS"]) == "2"
        )
    setup = KRAFT3["services"]["setup"]["environment"]
    assert setup["HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS"].split(",") == [f"{n}:9092" for n in kafkas]
    # What `hookstream topics apply` in the setup service creates with that environment:
    specs = topology.declared(
        Settings(
            **{
                k[len("HOOKSTREAM_") :].lower(): v
                for k, v in setup.items()
                if k in ("HOOKSTREAM_TOPIC_REPLICATION_FACTOR", "HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS")
            }
        )
    )
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {(3, "2")}
    assert {
        (s.replication_factor, s.config["min.insync.replicas"])
        for s in topology.declared(
            Settings(
                topic_replication_factor=SINGLE["services"]["setup"]["environment"][
                    "HOOKSTREAM_TOPIC_REPLICATION_FACTOR"
                ],
                topic_min_insync_replicas=SINGLE["services"]["setup"]["environment"][
                    "HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS"
                ],
            )
        )
    } == {(1, "1")}
    depends = KRAFT3["services"]["setup"]["depends_on"]
    assert all(depends[n]["condition"] == "service_healthy" for n in kafkas)


@pytest.mark.parametrize("compose", [SINGLE, KRAFT3], ids=["single", "kraft3"])
def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if service.get("restart") == "no":
            continue  # one-shot (setup)
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_github_adapter_credentials_reach_the_workers():
    fields = set(Settings.model_fields)
    assert {"github_app_id", "github_private_key_file", "github_token"} <= fields
    for name, service in _workers(SINGLE).items():
        env = service["environment"]
        assert {"HOOKSTREAM_GITHUB_APP_ID", "HOOKSTREAM_GITHUB_TOKEN"} <= set(env), name
        key_file = env["HOOKSTREAM_GITHUB_PRIVATE_KEY_FILE"]
        secret = key_file.removeprefix("/run/secrets/")
        assert secret in service["secrets"] and secret in SINGLE["secrets"], name
    assert "${GITHUB_APP_ID" in COMPOSE_TEXT and "${GITHUB_TOKEN" in COMPOSE_TEXT


def test_every_hookstream_variable_in_compose_is_a_real_setting():
    fields = {f"HOOKSTREAM_{name.upper()}" for name in Settings.model_fields}
    for name, service in COMPOSE["services"].items():
        env = service.get("environment") or {}
        for var in env:
            if var.startswith("HOOKSTREAM_"):
                assert var in fields, f"{name}: {var} is not a setting"


def test_every_hookstream_command_in_compose_parses():
    parser = build_parser()
    for name in ("ingress", "worker-1", "worker-2"):
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


# --- metrics: Prometheus and Grafana ------------------------------------------------------------

PROMETHEUS = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "hookstream.json"


def _mounted(service: str) -> dict[str, str]:
    """Host path (relative to the repository) -> container path, for the service's bind mounts."""
    mounts = {}
    for volume in SINGLE["services"][service].get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("./"):
            mounts[host[2:]] = container
    return mounts


def test_prometheus_scrapes_the_ingress_and_every_worker_where_they_serve_metrics():
    assert {"prometheus", "grafana"} <= set(SINGLE["services"])
    assert _mounted("prometheus")["deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in PROMETHEUS["scrape_configs"]}
    ingress, worker = jobs["hookstream-ingress"], jobs["hookstream-worker"]
    assert ingress["names"] == ["ingress"] and ingress["type"] == "A"
    assert str(ingress["port"]) == SINGLE["services"]["ingress"]["command"][-1]
    # Every worker service, and nothing else, at the port its web listens on.
    workers = _workers(SINGLE)
    assert sorted(worker["names"]) == sorted(workers) and worker["type"] == "A"
    for name, service in workers.items():
        env = service["environment"]
        assert worker["port"] == int(
            env.get("HOOKSTREAM_WORKER_WEB_PORT", Settings.model_fields["worker_web_port"].default)
        )
        assert env["HOOKSTREAM_WORKER_WEB_HOST"] == "0.0.0.0", name  # reachable from the Prometheus container


def test_grafana_is_provisioned_with_the_datasource_and_the_committed_dashboard():
    mounts = _mounted("grafana")
    assert mounts["deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/dashboards/hookstream.yml").read_text())[
        "providers"
    ]
    assert mounts["deploy/grafana/dashboards"] == provider["options"]["path"]
    [source] = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    import json

    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == source["uid"] for p in panels)


def test_every_metric_the_dashboard_queries_is_one_hookstream_exports():
    import json
    import re

    from app.ingress.metrics import IngressMetrics
    from app.stream.metrics import WorkerMetrics

    exported = set()
    for registry in (WorkerMetrics().registry, IngressMetrics().registry):
        for family in registry.collect():
            exported |= {
                family.name,
                f"{family.name}_total",
                f"{family.name}_bucket",
                f"{family.name}_count",
                f"{family.name}_sum",
            }
    queried = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\b(hookstream_[a-z_]+)", target["expr"]))
    assert queried and queried <= exported, sorted(queried - exported)
