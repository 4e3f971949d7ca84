#!/usr/bin/env bash
# Installs what the observability tests need on a fresh Debian machine:
#   prometheus (with promtool), prometheus-alertmanager (amtool) from Debian's packages, and
#   Grafana's dashboard linter built with `go install` into $LINTER_BIN (default /usr/local/bin).
# Safe to run again: installed pieces are left alone.
set -euo pipefail

DASHBOARD_LINTER_MODULE=github.com/grafana/dashboard-linter
DASHBOARD_LINTER_VERSION=a0884062a6546a5d3a95e11f2e8e4832e959080f
LINTER_BIN=${LINTER_BIN:-/usr/local/bin}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-obs: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    # The packages start their services; the tests run their own on loopback ports.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    for service in prometheus prometheus-alertmanager; do
        $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
    done
fi
prometheus --version 2>&1 | head -1
amtool --version 2>&1 | head -1

if [ -x "$LINTER_BIN/dashboard-linter" ] || command -v dashboard-linter >/dev/null 2>&1; then
    echo "install-obs: dashboard-linter present"
elif ! command -v go >/dev/null 2>&1; then
    echo "install-obs: go not found; install Go 1.23+ to build the dashboard linter" >&2
else
    echo "install-obs: go install $DASHBOARD_LINTER_MODULE@$DASHBOARD_LINTER_VERSION"
    # A module proxy that refuses the linter leaves the tests on the project's own
    # implementation of its rules (dashboards/lint.py), which they always run.
    if ! GOBIN="$LINTER_BIN" go install "$DASHBOARD_LINTER_MODULE@$DASHBOARD_LINTER_VERSION"; then
        echo "install-obs: WARNING: could not build dashboard-linter; see docs/observability.md" >&2
    fi
fi
