#!/usr/bin/env bash
# Apache Kafka from Maven Central jars, for `make run`, `make test` and `make bench`.
#
#   kafka.sh fetch        copy the broker's jars (pom.xml beside this file) into the cache, once
#   kafka.sh libs         print the folder of the jars (after fetch)
#   kafka.sh node [opts]  format a node's storage once, then run the node in the foreground
#
# node options (all have defaults for one node on 127.0.0.1:9092):
#   --dir DIR              the node's folder: settings, cluster id, data (kept across restarts)
#   --node-id N            1
#   --port P               client (PLAINTEXT) port, 9092
#   --controller-port C    KRaft controller port, 9095 (9093 is the retry tier's under make run)
#   --voters LIST          controller quorum, N@127.0.0.1:C,...; this node alone by default
#   --cluster-id ID        shared by every node of a cluster; kept in DIR/cluster-id otherwise
#   --replication N        replication factor of Kafka's internal topics, 1
#   --min-insync N         the broker's min.insync.replicas, 1
#   --heap SIZE            the JVM heap, 512m
# The node runs as `exec java`, so a signal to this script's pid reaches the broker itself:
# SIGTERM is a clean shutdown, SIGKILL a crash.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
cache="${HOOKSTREAM_CACHE:-$HOME/.cache/hookstream}"
libs="$cache/kafka-$version/libs"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_java() {
    command -v java >/dev/null \
        || die "no java on PATH: install OpenJDK 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
    local major
    major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [ "${major%%.*}" -ge 17 ] 2>/dev/null \
        || die "java $major is too old: Kafka $version needs Java 17 or newer"
}

fetch() {
    need_java
    # The jars are complete when the stamp holds the checksum of the pom they came from.
    local sum
    sum=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
    [ "$(cat "$libs/.complete" 2>/dev/null)" = "$sum" ] && return 0
    command -v mvn >/dev/null \
        || die "no mvn on PATH: install Maven 3.8 or newer (Debian: apt-get install maven) to download Kafka $version"
    echo "Downloading Apache Kafka $version from Maven Central into $libs (about 45 MB, once)..." >&2
    # Into a folder of this call's own, moved into place whole: tests starting brokers at the
    # same time never see half a copy.
    local tmp
    mkdir -p "$(dirname "$libs")"
    tmp=$(mktemp -d "$libs.XXXXXX")
    mvn -B -q -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" \
        || { rm -rf "$tmp"; die "Maven could not download Kafka $version (see above)"; }
    echo "$sum" > "$tmp/.complete"
    rm -rf "$libs"
    mv "$tmp" "$libs" 2>/dev/null || rm -rf "$tmp"
}

node() {
    local dir="" node_id=1 port=9092 controller_port=9095 voters="" cluster_id=""
    local replication=1 min_insync=1 heap=512m
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir=$2 ;;
            --node-id) node_id=$2 ;;
            --port) port=$2 ;;
            --controller-port) controller_port=$2 ;;
            --voters) voters=$2 ;;
            --cluster-id) cluster_id=$2 ;;
            --replication) replication=$2 ;;
            --min-insync) min_insync=$2 ;;
            --heap) heap=$2 ;;
            *) die "unknown option $1" ;;
        esac
        shift 2 || die "$1 needs a value"
    done
    [ -n "$dir" ] || die "node needs --dir"
    fetch
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    voters=${voters:-$node_id@127.0.0.1:$controller_port}

    if [ -z "$cluster_id" ]; then
        # A Kafka cluster id is 16 random bytes in URL-safe base64, without padding; like
        # Kafka's own, never one that starts with "-" (the format command would read an option).
        while [ ! -s "$dir/cluster-id" ] || [ "$(head -c 1 "$dir/cluster-id")" = "-" ]; do
            head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$dir/cluster-id"
        done
        cluster_id=$(cat "$dir/cluster-id")
    fi

    # Transactions need two in-sync replicas of their state when there are three nodes.
    local internal_isr=$(( replication < 2 ? 1 : 2 ))
    cat > "$dir/server.properties" <<PROPS
# Written by deploy/kafka/kafka.sh at every start; edit the script, not this file.
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# Kafka's own topics, sized for one machine.
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$internal_isr
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$internal_isr
default.replication.factor=$replication
min.insync.replicas=$min_insync
# Hookstream creates its topics with explicit settings; a typo in a topic name should fail,
# not create a topic with defaults.
auto.create.topics.enable=false
# Consumers join at once instead of waiting 3 s for others (the default is for big groups).
group.initial.rebalance.delay.ms=0
PROPS

    local classpath="$libs/*"
    if [ ! -f "$dir/data/meta.properties" ]; then
        java -cp "$classpath" kafka.tools.StorageTool format \
            -t "$cluster_id" -c "$dir/server.properties" --ignore-formatted >&2
    fi
    # HOOKSTREAM_RUN_ID marks the JVM so that `make test` can stop every broker it started,
    # whatever happened to the test that started it.
    exec java ${HOOKSTREAM_RUN_ID:+-Dhookstream.run=$HOOKSTREAM_RUN_ID} \
        -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$here/log4j2.properties" \
        -Dkafka.logs.dir="$dir/logs" \
        -cp "$classpath" kafka.Kafka "$dir/server.properties"
}

case "${1:-}" in
    fetch) fetch ;;
    libs) fetch; echo "$libs" ;;
    node) shift; node "$@" ;;
    *) die "usage: kafka.sh fetch | libs | node [--dir DIR --node-id N --port P ...]" ;;
esac
