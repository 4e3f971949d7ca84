# Settings shared by kafka-up.sh and kafka-down.sh; sourced, not run.
# Every knob is an environment variable so tests can run a broker (or a cluster) per port.
KAFKA_HOME_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$KAFKA_HOME_DIR/../.." && pwd)"
BROKERS="${BROKERS:-1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_ROOT/.scratch/kafka-$KAFKA_PORT}"
KAFKA_LIB_DIR="$KAFKA_HOME_DIR/lib"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

die() {
    echo "kafka: $*" >&2
    exit 1
}

port_open() {
    (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

# Node i of the cluster. A single node keeps the layout of earlier versions (data directly in
# KAFKA_DATA_DIR, controller on KAFKA_CONTROLLER_PORT or the next port).
node_dir() { if [ "$BROKERS" -eq 1 ]; then echo "$KAFKA_DATA_DIR"; else echo "$KAFKA_DATA_DIR/node-$1"; fi; }
node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_controller_port() {
    if [ "$BROKERS" -eq 1 ]; then echo "${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"; else echo $((KAFKA_PORT + 2 * ($1 - 1) + 1)); fi
}
node_pid_file() { echo "$(node_dir "$1")/broker.pid"; }
bootstrap_servers() {
    local out="" i
    for i in $(seq 1 "$BROKERS"); do out="${out:+$out,}$KAFKA_HOST:$(node_port "$i")"; done
    echo "$out"
}

node_pid() {
    # Prints the pid of node i if it is alive, or nothing.
    local f
    f="$(node_pid_file "$1")"
    [ -f "$f" ] || return 0
    local pid
    pid="$(cat "$f")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}
