#!/usr/bin/env bash
# Stops the nodes started by kafka-up.sh for the same BROKERS / KAFKA_PORT / KAFKA_DATA_DIR.
#   --wipe     also delete the data directory (the nodes are killed, not shut down
#              cleanly: a clean shutdown only writes checkpoints that are then deleted)
#   --node I   stop only node I (the others keep running)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

wipe=0 only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wipe) wipe=1 ;;
        --node) only="${2:-}"; shift ;;
        "") ;;
        *) die "unknown argument '$1' (expected --wipe or --node I)" ;;
    esac
    shift
done

stop_nodes() { # node numbers
    local i pid pids=() sig=TERM
    [ "$wipe" = 1 ] && sig=KILL
    for i in "$@"; do
        pid="$(node_pid "$i")"
        if [ -z "$pid" ]; then
            echo "kafka: node $i not running (no live pid in $(node_pid_file "$i"))"
            continue
        fi
        # All at once: a node of a cluster shuts down cleanly only while a controller quorum
        # is still there to hand its partitions to, so one-by-one would leave the last waiting.
        kill "-$sig" "$pid"
        pids+=("$i:$pid")
    done
    local entry
    for entry in "${pids[@]}"; do
        i="${entry%%:*}" pid="${entry#*:}"
        # A clean shutdown writes its checkpoints; give it time before forcing.
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "kafka: pid $pid ignored SIGTERM for 30 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$(node_pid_file "$i")"
        echo "kafka: node $i stopped (pid $pid)"
    done
}

if [ -n "$only" ]; then
    stop_nodes "$only"
    exit 0
fi
# shellcheck disable=SC2046
stop_nodes $(seq 1 "$BROKERS")
if [ "$wipe" = 1 ]; then
    rm -rf "$KAFKA_DATA_DIR"
    echo "kafka: removed $KAFKA_DATA_DIR"
fi
