#!/usr/bin/env bash
# Starts Apache Kafka (KRaft) on loopback and returns once every node accepts clients.
#
#   BROKERS=1                  nodes; each is broker + controller in one JVM. With 3 or more,
#                              topics default to replication factor 3 and min.insync.replicas 2
#   KAFKA_PORT=9092            client port of node 1 (its controller listens on KAFKA_PORT+1);
#                              node i listens on KAFKA_PORT+2(i-1) and the port after it
#   KAFKA_DATA_DIR=.scratch/kafka-$KAFKA_PORT   logs, metadata and pid files
#                              (one node: directly in it; several: in node-1, node-2, ...)
#   KAFKA_HEAP="-Xms256m -Xmx1g"  (several nodes: -Xms128m -Xmx512m each)
#   KAFKA_START_TIMEOUT=90     seconds to wait for the nodes
#
# Run again with the same settings, it starts only the nodes that are not running: that is
# how a test restarts a broker it killed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v java >/dev/null 2>&1 || die "java not found. Install a JDK 17+:
  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless
  macOS:         brew install openjdk@17"
case "$BROKERS" in
    '' | *[!0-9]* | 0) die "BROKERS must be a positive whole number, not '$BROKERS'" ;;
esac

if command -v flock >/dev/null 2>&1; then
    # Test runs start brokers from several processes at once: one fetches, the others wait
    # for it rather than find its first jar and start on a half-copied lib/. The lock's
    # descriptor is closed below, so the brokers started later do not hold it.
    mkdir -p "$KAFKA_LIB_DIR"
    exec 9>"$KAFKA_LIB_DIR/.fetch.lock"
    flock 9
fi
if ! ls "$KAFKA_LIB_DIR"/kafka_2.13-*.jar >/dev/null 2>&1; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to fetch the broker jars.
  Debian/Ubuntu: sudo apt-get install -y maven
  macOS:         brew install maven"
    echo "kafka: resolving broker jars with Maven into $KAFKA_LIB_DIR ..."
    mvn -q -B -f "$KAFKA_HOME_DIR/pom.xml" dependency:copy-dependencies \
        || die "Maven could not resolve org.apache.kafka:kafka_2.13 (is Maven Central reachable?)"
fi
exec 9>&-

# Replication follows the cluster's size: one node cannot replicate; three or more give the
# production shape, where one broker may die without refusing writes (acks=all).
if [ "$BROKERS" -ge 3 ]; then RF=3; MIN_ISR=2; else RF=$BROKERS; MIN_ISR=1; fi
if [ "$BROKERS" -gt 1 ]; then DEFAULT_HEAP="-Xms128m -Xmx512m"; else DEFAULT_HEAP="-Xms256m -Xmx1g"; fi
VOTERS=""
for i in $(seq 1 "$BROKERS"); do
    VOTERS="${VOTERS:+$VOTERS,}$i@$KAFKA_HOST:$(node_controller_port "$i")"
done
CP="$KAFKA_LIB_DIR/*"

write_config() { # node dir port controller_port
    local id=$1 dir=$2 port=$3 cport=$4
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$VOTERS
listeners=PLAINTEXT://$KAFKA_HOST:$port,CONTROLLER://$KAFKA_HOST:$cport
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=8
# A lone consumer should not wait 3 s for peers that will never join.
group.initial.rebalance.delay.ms=0
# Room for oversized input records, so they reach the dead-letter path instead of
# being refused at produce time.
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
log.retention.hours=24
# A killed broker's partitions move to a live replica in seconds, not the default 18 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
PROPS
    cat >"$dir/log4j.properties" <<LOG
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
LOG
}

java_opts() { # dir
    echo "-server ${KAFKA_HEAP:-$DEFAULT_HEAP} -XX:+UseG1GC -XX:-UsePerfData -Djava.awt.headless=true" \
        "-Dlog4j.configuration=file:$1/log4j.properties -Dkafka.logs.dir=$1/logs"
}

CLUSTER_ID_FILE="$KAFKA_DATA_DIR/cluster.id"
started=()
for i in $(seq 1 "$BROKERS"); do
    dir="$(node_dir "$i")" port="$(node_port "$i")" cport="$(node_controller_port "$i")"
    if [ -n "$(node_pid "$i")" ]; then
        echo "kafka: node $i already running (pid $(node_pid "$i")) on $KAFKA_HOST:$port"
        continue
    fi
    for p in "$port" "$cport"; do
        port_open "$p" && die "port $p is taken by another process; set KAFKA_PORT to a free port"
    done
    mkdir -p "$dir/logs" "$dir/data"
    write_config "$i" "$dir" "$port" "$cport"
    # shellcheck disable=SC2046
    if [ ! -f "$dir/data/meta.properties" ]; then
        # Every node of one cluster is formatted with the same cluster id.
        [ -s "$CLUSTER_ID_FILE" ] || java $(java_opts "$dir") -cp "$CP" kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE"
        java $(java_opts "$dir") -cp "$CP" kafka.tools.StorageTool format \
            -t "$(cat "$CLUSTER_ID_FILE")" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 \
            || die "formatting storage failed; see $dir/logs/format.log"
    fi
    : >"$dir/logs/server.log"
    # shellcheck disable=SC2046
    nohup java $(java_opts "$dir") -cp "$CP" kafka.Kafka "$dir/server.properties" \
        >"$dir/logs/stdout.log" 2>&1 </dev/null &
    echo $! >"$(node_pid_file "$i")"
    started+=("$i")
done

# The nodes start together: a controller quorum of several forms only once most are up.
deadline=$((SECONDS + KAFKA_START_TIMEOUT))
for i in "${started[@]}"; do
    dir="$(node_dir "$i")" port="$(node_port "$i")"
    while true; do
        if [ -z "$(node_pid "$i")" ]; then
            tail -n 30 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 || true
            die "node $i exited during startup; logs in $dir/logs"
        fi
        if port_open "$port" && grep -q "Kafka Server started" "$dir/logs/server.log"; then
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "node $i did not answer on $KAFKA_HOST:$port within ${KAFKA_START_TIMEOUT}s; logs in $dir/logs"
        fi
        sleep 0.5
    done
    echo "kafka: node $i up on $KAFKA_HOST:$port (pid $(node_pid "$i"), data $dir)"
done
echo "kafka: bootstrap $(bootstrap_servers) (replication factor $RF, min.insync.replicas $MIN_ISR)"
