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


# --- metrics: Prometheus and Grafana ------------------------------------------------------------

PROMETHEUS = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "hookstream.json"


def _mounted(service: str) -> dict[str, str]:
    """Host path (relative to the repository) -> container path, for the service's bind mounts."""
    mounts = {}
    for volume in COMPOSE["services"][service].get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("./"):
            mounts[host[2:]] = container
    return mounts


def test_prometheus_scrapes_the_ingress_and_every_worker_where_they_serve_metrics():
    assert {"prometheus", "grafana"} <= set(COMPOSE["services"])
    assert _mounted("prometheus")["deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in PROMETHEUS["scrape_configs"]}
    ingress, worker = jobs["hookstream-ingress"], jobs["hookstream-worker"]
    # Compose's DNS answers a service name with every replica's address.
    assert ingress["names"] == ["ingress"] and ingress["type"] == "A"
    assert "--port" in COMPOSE["services"]["ingress"]["command"]
    assert str(ingress["port"]) == COMPOSE["services"]["ingress"]["command"][-1]
    assert worker["names"] == ["worker"] and worker["type"] == "A"
    env = COMPOSE["services"]["worker"]["environment"]
    assert worker["port"] == int(env.get("HOOKSTREAM_WORKER_WEB_PORT", Settings.model_fields["worker_web_port"].default))
    assert env["HOOKSTREAM_WORKER_WEB_HOST"] == "0.0.0.0"  # reachable from the Prometheus container


def test_grafana_is_provisioned_with_the_datasource_and_the_committed_dashboard():
    mounts = _mounted("grafana")
    assert mounts["deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/dashboards/hookstream.yml").read_text())["providers"]
    assert mounts["deploy/grafana/dashboards"] == provider["options"]["path"]
    [source] = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
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
            exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_count",
                         f"{family.name}_sum"}
    queried = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"\b(hookstream_[a-z_]+)", target["expr"]))
    assert queried and queried <= exported, sorted(queried - exported)
