#!/usr/bin/env bash
# Starts a single-node Apache Kafka (KRaft, broker + controller in one JVM) on loopback
# and returns once it accepts clients.
#
#   KAFKA_PORT=9092            client port (controller listens on KAFKA_PORT+1)
#   KAFKA_DATA_DIR=.scratch/kafka-$KAFKA_PORT   logs, metadata and the pid file
#   KAFKA_HEAP="-Xms256m -Xmx1g"
#   KAFKA_START_TIMEOUT=90     seconds to wait for the broker
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v java >/dev/null 2>&1 || die "java not found. Install a JDK 17+:
  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless
  macOS:         brew install openjdk@17"

if ! ls "$KAFKA_LIB_DIR"/kafka_2.13-*.jar >/dev/null 2>&1; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to fetch the broker jars.
  Debian/Ubuntu: sudo apt-get install -y maven
  macOS:         brew install maven"
    echo "kafka: resolving broker jars with Maven into $KAFKA_LIB_DIR ..."
    mvn -q -B -f "$KAFKA_HOME_DIR/pom.xml" dependency:copy-dependencies \
        || die "Maven could not resolve org.apache.kafka:kafka_2.13 (is Maven Central reachable?)"
fi

if [ -n "$(broker_pid)" ]; then
    echo "kafka: already running (pid $(broker_pid)) on $KAFKA_HOST:$KAFKA_PORT"
    exit 0
fi
if port_open "$KAFKA_PORT"; then
    die "port $KAFKA_PORT is taken by another process; set KAFKA_PORT to a free port"
fi

mkdir -p "$KAFKA_DATA_DIR/logs" "$KAFKA_DATA_DIR/data"
PROPS="$KAFKA_DATA_DIR/server.properties"
cat >"$PROPS" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA_DIR/data
num.partitions=1
# One node: internal topics cannot be replicated, and few partitions start faster.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
# A lone consumer should not wait 3 s for peers that will never join.
group.initial.rebalance.delay.ms=0
# Room for oversized input records, so they reach the dead-letter path instead of
# being refused at produce time.
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
log.retention.hours=24
PROPS

cat >"$KAFKA_DATA_DIR/log4j.properties" <<LOG
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_DATA_DIR/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
LOG

CP="$KAFKA_LIB_DIR/*"
JAVA_OPTS=(-server ${KAFKA_HEAP:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:-UsePerfData
    -Djava.awt.headless=true -Dlog4j.configuration="file:$KAFKA_DATA_DIR/log4j.properties"
    -Dkafka.logs.dir="$KAFKA_DATA_DIR/logs")

if [ ! -f "$KAFKA_DATA_DIR/data/meta.properties" ]; then
    CLUSTER_ID="$(java "${JAVA_OPTS[@]}" -cp "$CP" kafka.tools.StorageTool random-uuid)"
    java "${JAVA_OPTS[@]}" -cp "$CP" kafka.tools.StorageTool format \
        -t "$CLUSTER_ID" -c "$PROPS" >"$KAFKA_DATA_DIR/logs/format.log" 2>&1 \
        || die "formatting storage failed; see $KAFKA_DATA_DIR/logs/format.log"
fi

: >"$KAFKA_DATA_DIR/logs/server.log"
nohup java "${JAVA_OPTS[@]}" -cp "$CP" kafka.Kafka "$PROPS" \
    >"$KAFKA_DATA_DIR/logs/stdout.log" 2>&1 </dev/null &
echo $! >"$KAFKA_PID_FILE"

deadline=$((SECONDS + KAFKA_START_TIMEOUT))
while true; do
    if [ -z "$(broker_pid)" ]; then
        tail -n 30 "$KAFKA_DATA_DIR/logs/stdout.log" "$KAFKA_DATA_DIR/logs/server.log" >&2 || true
        die "broker exited during startup; logs in $KAFKA_DATA_DIR/logs"
    fi
    if port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$KAFKA_DATA_DIR/logs/server.log"; then
        break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "broker did not answer on $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s; logs in $KAFKA_DATA_DIR/logs"
    fi
    sleep 0.5
done
echo "kafka: up on $KAFKA_HOST:$KAFKA_PORT (pid $(broker_pid), data $KAFKA_DATA_DIR)"
