#!/usr/bin/env bash
# Stops the broker started by kafka-up.sh for the same KAFKA_PORT / KAFKA_DATA_DIR.
#   --wipe   also delete its data directory
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pid="$(broker_pid)"
if [ -z "$pid" ]; then
    echo "kafka: not running (no live pid in $KAFKA_PID_FILE)"
else
    kill -TERM "$pid"
    # A clean shutdown writes its checkpoints; give it time before forcing.
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "kafka: pid $pid ignored SIGTERM for 30 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_PID_FILE"
    echo "kafka: stopped (pid $pid)"
fi
if [ "${1:-}" = "--wipe" ]; then
    rm -rf "$KAFKA_DATA_DIR"
    echo "kafka: removed $KAFKA_DATA_DIR"
fi
