"""Grafana dashboards for Vigil, kept as code.

`python -m dashboards.build` writes the JSON that Grafana provisions from dashboards/json/.
"""
