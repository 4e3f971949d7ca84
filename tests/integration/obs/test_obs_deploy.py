"""Compose and Kubernetes files: everything they mount exists, every image is pinned, the
commands they run exist in the CLI, and the copies of shared files agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streams.core.config_load import load_config

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
K8S_DIR = DEPLOY / "k8s"
K8S = [
    doc
    for path in sorted(K8S_DIR.glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for doc in yaml.safe_load_all(path.read_text())
]
# Secrets are built by kustomize's secretGenerator from a file the operator writes (never
# from git), so they count as resources under their generated names.
K8S += [
    {"kind": "Secret", "metadata": {"name": g["name"]}}
    for g in yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text()).get("secretGenerator", [])
]
VIGIL = str(Path(sys.executable).with_name("vigil"))
PINNED = re.compile(r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]*\d[A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$")
FLOATING_TAGS = {"latest", "stable", "main", "edge", "nightly"}


def k8s(kind: str, name: str) -> dict:
    return next(d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name)


def images(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def cli_flags(*command: str) -> set[str]:
    # A wide terminal keeps typer's help table from cutting option names.
    proc = subprocess.run(
        [VIGIL, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(re.findall(r"--[a-z][a-z0-9-]+", proc.stdout))


def flags_of(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def test_compose_has_every_service() -> None:
    services = COMPOSE["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    workers = [name for name in services if name.startswith("worker-")]
    assert len(workers) >= 2
    for name in ("prometheus", "grafana", "alertmanager", "console", "store-sink"):
        assert name in services


@pytest.mark.parametrize("image", sorted(set(images(COMPOSE)) | set(images(K8S))))
def test_image_tag_is_pinned(image: str) -> None:
    assert PINNED.match(image), f"{image} has no pinned tag"
    assert image.rsplit(":", 1)[-1] not in FLOATING_TAGS


def test_every_compose_mount_exists() -> None:
    declared = set(COMPOSE.get("volumes", {}))
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file()


def test_dockerfile_copies_existing_paths() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    context = DEPLOY / COMPOSE["services"]["worker-0"]["build"]["context"]
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for line in dockerfile.splitlines():
        if line.startswith("COPY --from="):
            stage = line.split()[1].removeprefix("--from=")
            assert stage in stages, f"{line}: no build stage {stage}"
        elif line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"COPY {source}: missing"
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", dockerfile, re.M)


def compose_cli() -> list[str] | None:
    """`docker compose` when the docker client has the plugin, else a standalone binary."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_compose_config_parses() -> None:
    """Compose's own parser where a compose CLI is installed; its YAML model always."""
    cli = compose_cli()
    if cli:
        # --env-file: a deploy/.env written by `make obs-up` must not fill the gaps here.
        command = [*cli, "--env-file", os.devnull, "-f", str(COMPOSE_FILE)]
        command += ["--profile", "demo", "config", "--quiet"]
        # The stack has no default passwords: compose refuses without them, runs with them.
        secrets = ("VIGIL_DB_PASSWORD", "VIGIL_CONSOLE_SECRET", "GRAFANA_ADMIN_PASSWORD")
        bare = {k: v for k, v in os.environ.items() if k not in secrets}
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=bare)
        assert proc.returncode != 0 and any(s in proc.stderr for s in secrets), proc.stderr
        given = {**bare, **{k: "0123456789abcdef" * 4 for k in secrets}}
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=given)
        assert proc.returncode == 0, proc.stderr
    for name, service in COMPOSE["services"].items():
        assert "image" in service, name
        for dep in service.get("depends_on", {}):
            assert dep in COMPOSE["services"], f"{name} depends on unknown {dep}"


def test_compose_worker_and_console_flags_exist() -> None:
    worker = COMPOSE["services"]["worker-0"]["command"]
    assert worker[0] == "worker"
    missing = flags_of(worker) - cli_flags("worker")
    assert not missing, f"vigil worker has no {sorted(missing)}"
    console = COMPOSE["services"]["console"]["command"]
    assert not flags_of(console) - cli_flags("console")
    sink = COMPOSE["services"]["store-sink"]["command"]
    assert not flags_of(sink) - cli_flags("store-sink")


def test_prometheus_scrapes_the_compose_workers() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "vigil-worker")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = {n for n in COMPOSE["services"] if n.startswith("worker-")}
    port = next(a for a in COMPOSE["services"]["worker-0"]["command"] if "--web-port" in a)
    assert targets == {f"{w}:{port.split('=')[1]}" for w in workers}


def test_shared_config_is_valid_and_matches_the_configmap() -> None:
    toml = DEPLOY / "config" / "vigil.toml"
    load_config(toml)  # raises ConfigError on a bad key or value
    configmap = next(d for d in K8S if d["kind"] == "ConfigMap")
    assert configmap["data"]["vigil.toml"] == toml.read_text()


def test_k8s_has_every_kind() -> None:
    kinds = {d["kind"] for d in K8S}
    assert kinds >= {"StatefulSet", "Service", "ConfigMap", "Secret", "PrometheusRule"}
    assert kinds & {"ServiceMonitor", "PodMonitor"}
    listed = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_statefulset_wiring() -> None:
    sts = k8s("StatefulSet", "vigil-worker")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert "state" in claims and mounts["state"] == "/var/lib/vigil/state"
    assert "--data-dir=/var/lib/vigil/state" in container["args"]
    by_kind = {(d["kind"], d["metadata"]["name"]) for d in K8S}
    config_volumes = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
    assert all(("ConfigMap", name) in by_kind for name in config_volumes) and config_volumes
    secrets = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
    assert all(("Secret", name) in by_kind for name in secrets) and secrets
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    service = k8s("Service", "vigil-worker")
    assert spec["serviceName"] == service["metadata"]["name"] == "vigil-worker"
    assert service["spec"]["selector"].items() <= labels.items()
    port_name = service["spec"]["ports"][0]["name"]
    assert port_name in {p["name"] for p in container["ports"]}


@pytest.mark.parametrize(
    "workload",
    [d for d in K8S if d["kind"] in ("StatefulSet", "Deployment")],
    ids=lambda d: d["metadata"]["name"],
)
def test_k8s_commands_exist_in_the_cli(workload: dict) -> None:
    pod = workload["spec"]["template"]["spec"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    by_kind = {(d["kind"], d["metadata"]["name"]) for d in K8S}
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in by_kind
    for container in pod["containers"]:
        args = container["args"]
        missing = flags_of(args) - cli_flags(args[0])
        assert not missing, f"vigil {args[0]} has no {sorted(missing)}"
        for ref in container.get("envFrom", []):
            assert ("Secret", ref["secretRef"]["name"]) in by_kind


def test_servicemonitor_selects_the_worker_service() -> None:
    monitor = next(d for d in K8S if d["kind"] in ("ServiceMonitor", "PodMonitor"))
    service = k8s("Service", "vigil-worker")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert ports <= {p["name"] for p in service["spec"]["ports"]}


def test_prometheusrule_matches_the_rules_file() -> None:
    rule = next(d for d in K8S if d["kind"] == "PrometheusRule")
    files = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    groups = [g for path in files for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"] == {"groups": groups}, "run python deploy/k8s/render-prometheusrule.py"
