"""Rewrites the spec of deploy/k8s/prometheusrule.yaml from deploy/prometheus/rules/*.yml.

python deploy/k8s/render-prometheusrule.py   (tests/integration/obs/test_obs_deploy.py fails while they differ)
"""

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1]
TARGET = DEPLOY / "k8s" / "prometheusrule.yaml"

header, body = TARGET.read_text().split("apiVersion:", 1)
doc = yaml.safe_load("apiVersion:" + body)
files = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
doc["spec"] = {"groups": [g for f in files for g in yaml.safe_load(f.read_text())["groups"]]}
TARGET.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True))
print(f"wrote {TARGET}")
