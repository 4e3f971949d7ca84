"""Deploy manifests ship no passwords, and the console refuses to start with a known secret.

Issue 19, finding 7: compose defaulted the database and Grafana passwords, Kubernetes
shipped `change-me` placeholders, and the console ran on Kubernetes without secure cookies.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from console.startup import StartupError, check_store_url, console_secret

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S_DIR = DEPLOY / "k8s"
COMPOSE_TEXT = (DEPLOY / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
VIGIL = str(Path(sys.executable).with_name("vigil"))
SENSITIVE = re.compile(r"PASSWORD|SECRET|TOKEN", re.I)
GOOD_SECRET = "4f1c" * 16


def test_compose_has_no_default_for_any_password_or_secret() -> None:
    # ${VAR:-default} and ${VAR-default} would start the stack on a known value.
    defaulted = re.findall(r"\$\{(\w+)(?::?-)[^}]*\}", COMPOSE_TEXT)
    assert not [v for v in defaulted if SENSITIVE.search(v)], defaulted
    for name, service in COMPOSE["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SENSITIVE.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}: {key}={value}"
    store_url = COMPOSE["services"]["console"]["environment"]["VIGIL_STORE_URL"]
    assert "${VIGIL_DB_PASSWORD:?" in store_url
    assert "VIGIL_CONSOLE_SECRET" in COMPOSE["services"]["console"]["environment"]
    example = (DEPLOY / ".env.example").read_text()
    for var in ("VIGIL_DB_PASSWORD", "VIGIL_CONSOLE_SECRET", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"^{var}=$", example, re.M), var  # named, left empty


def test_kubernetes_ships_no_secret_values_and_secure_cookies() -> None:
    for path in K8S_DIR.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert (doc or {}).get("kind") != "Secret", f"{path.name} ships a Secret"
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    generated = {g["name"]: g for g in kustomization["secretGenerator"]}
    env_file = generated["vigil-secrets"]["envs"][0]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"deploy/k8s/{env_file}"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, f"deploy/k8s/{env_file} must be ignored by git"
    console = next(
        d
        for d in yaml.safe_load_all((K8S_DIR / "console.yaml").read_text())
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "vigil-console"
    )
    args = console["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--secure-cookies" in args


def test_the_shipped_examples_are_refused_as_they_are() -> None:
    values = dict(
        line.split("=", 1)
        for line in (K8S_DIR / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    with pytest.raises(StartupError):
        console_secret(values["VIGIL_CONSOLE_SECRET"], "0.0.0.0")
    with pytest.raises(StartupError):
        check_store_url(values["VIGIL_STORE_URL"])


@pytest.mark.parametrize(
    "value", ["", "   ", "change-me", "CHANGEME", "<your-secret>", "${SECRET}", "secret", "short"]
)
def test_placeholder_or_weak_secrets_are_refused(value: str) -> None:
    with pytest.raises(StartupError, match="VIGIL_CONSOLE_SECRET"):
        console_secret(value, "127.0.0.1")


def test_real_secrets_and_local_defaults_are_accepted() -> None:
    assert console_secret(GOOD_SECRET, "0.0.0.0") == GOOD_SECRET.encode()
    assert len(console_secret(None, "127.0.0.1")) == 32  # per-process key on loopback
    assert console_secret(None, "::1") != console_secret(None, "localhost")
    with pytest.raises(StartupError, match="not set"):
        console_secret(None, "0.0.0.0")
    check_store_url("data/demo/vigil.db")
    check_store_url(f"postgresql+psycopg://vigil:{GOOD_SECRET}@db:5432/vigil")
    check_store_url("postgresql+psycopg://vigil@127.0.0.1:5432/vigil")  # peer/trust auth
    for url in (
        "postgresql+psycopg://vigil:change-me@db/vigil",
        "postgresql+psycopg://vigil:vigil-local@db/vigil",
    ):
        with pytest.raises(StartupError, match="password"):
            check_store_url(url)


def run_console(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "VIGIL_CONSOLE_SECRET"}
    return subprocess.run(
        [VIGIL, "console", "--port", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("env", "args", "said"),
    [
        ({"VIGIL_CONSOLE_SECRET": ""}, ("--store", "x.db"), "VIGIL_CONSOLE_SECRET is empty"),
        ({"VIGIL_CONSOLE_SECRET": "change-me"}, ("--store", "x.db"), "is a placeholder"),
        ({}, ("--store", "x.db", "--host", "0.0.0.0"), "is not set"),
        (
            {"VIGIL_CONSOLE_SECRET": GOOD_SECRET},
            ("--store", "postgresql+psycopg://vigil:change-me@127.0.0.1:1/vigil"),
            "database password",
        ),
    ],
    ids=["empty", "placeholder", "unset-public", "db-password"],
)
def test_console_refuses_to_start_with_one_line(
    tmp_path: Path, env: dict, args: tuple, said: str
) -> None:
    proc = run_console(tmp_path, env, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "x.db").exists()  # refused before opening anything
