# Settings shared by kafka-up.sh and kafka-down.sh; sourced, not run.
# Every knob is an environment variable so tests can run a broker per port.
KAFKA_HOME_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$KAFKA_HOME_DIR/../.." && pwd)"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_ROOT/.scratch/kafka-$KAFKA_PORT}"
KAFKA_LIB_DIR="$KAFKA_HOME_DIR/lib"
KAFKA_PID_FILE="$KAFKA_DATA_DIR/broker.pid"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

die() {
    echo "kafka: $*" >&2
    exit 1
}

port_open() {
    (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

broker_pid() {
    # Prints the pid of a live broker started from this data dir, or nothing.
    [ -f "$KAFKA_PID_FILE" ] || return 0
    local pid
    pid="$(cat "$KAFKA_PID_FILE")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}
