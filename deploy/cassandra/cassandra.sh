#!/usr/bin/env bash
# A single-node Apache Cassandra 5.0 (CQL) for the tests, run from the Maven Central jars
# pinned in pom.xml beside this script. No tarball, no Docker.
#
#   cassandra.sh fetch
#       Copy the jars once into ${HOOKSTREAM_CACHE:-$HOME/.cache/hookstream}/cassandra-<version>/libs.
#   cassandra.sh start --dir DIR --port CQLPORT [--storage-port P] [--jmx-port P]
#       Write DIR/cassandra.yaml and DIR/logback.xml, then exec the JVM in the foreground
#       (its pid is this script's pid: kill it with SIGTERM). Data lives under DIR, so a second
#       start on the same DIR restarts with the data. The log goes to stdout at INFO.
#
# Ready when the log prints "Startup complete" (the CQL listener is up), or, from a client,
# when 127.0.0.1:CQLPORT answers `SELECT release_version FROM system.local`.
#
# Environment: HOOKSTREAM_CACHE (cache root), CASSANDRA_HEAP (max heap, default 1G),
# CASSANDRA_JVM_OPTS (extra JVM options, appended).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$here/pom.xml")
cache="${HOOKSTREAM_CACHE:-$HOME/.cache/hookstream}/cassandra-$version"
libs="$cache/libs"
stamp="$cache/libs.complete" # holds the sha256 of pom.xml the libs were copied for

die() { echo "cassandra.sh: $*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null || die "java not found: install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)"
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ ${v%%.*} -ge 17 ]] 2>/dev/null ||
    die "java $v found, Cassandra 5.0 here needs 17+ (Debian: apt-get install openjdk-17-jdk-headless)"
}

fetch() {
  need_java
  command -v mvn >/dev/null || die "mvn not found: install Maven 3 (Debian: apt-get install maven)"
  local sum
  sum=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$sum" ]]; then
    return 0
  fi
  rm -rf "$libs" "$libs.tmp" "$stamp"
  mkdir -p "$cache"
  # Maven keeps its own download cache in ~/.m2; this only copies the runtime closure out of it.
  # (Debian's Maven 3.8 prints stray colour resets even with -B -q: strip them.)
  mvn -B -q -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs.tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  mv "$libs.tmp" "$libs"
  echo "$sum" >"$stamp"
  echo "cassandra.sh: $(ls "$libs" | wc -l) jars in $libs" >&2
}

# A port nothing listens on now (a best effort: nothing reserves it until Cassandra binds it).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  die "found no free port"
}

start() {
  local dir="" port="" storage_port="" jmx_port=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dir) dir=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --storage-port) storage_port=$2; shift 2 ;;
      --jmx-port) jmx_port=$2; shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [[ -n $dir && -n $port ]] || die "usage: cassandra.sh start --dir DIR --port CQLPORT [--storage-port P] [--jmx-port P]"
  need_java
  [[ -f $stamp ]] || die "no jars in $libs: run '$0 fetch' first"
  [[ $dir != *[[:space:]]* ]] || die "DIR must not contain whitespace (it goes into file:// URLs and the yaml)"
  mkdir -p "$dir/triggers"
  dir=$(cd "$dir" && pwd)
  # The inter-node port is bound even on a single node: never the default 7000, so several
  # nodes (and a `make run`) can live side by side.
  storage_port=${storage_port:-$(free_port)}

  cat >"$dir/cassandra.yaml" <<EOF
cluster_name: hookstream-test
# One fixed token: a single node owns the whole ring; vnodes buy nothing here.
num_tokens: 1
initial_token: 0
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage_port"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage_port
native_transport_port: $port
start_native_transport: true
endpoint_snitch: SimpleSnitch
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories: [$dir/data]
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
# A fresh node with no 4.x peers: use 5.0's own formats (e.g. TTLs may expire after 2038).
storage_compatibility_mode: NONE
# Tests drop and truncate a lot: no snapshot each time.
auto_snapshot: false
# Small caches: a test node holds little data (defaults size them from the heap).
key_cache_size: 8MiB
counter_cache_size: 4MiB
file_cache_size: 32MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
# Each test keyspace prepares its own ~100 statements; the default cache (10 MiB on a small heap)
# evicts them mid-run once a few dozen keyspaces exist.
prepared_statements_cache_size: 64MiB
EOF

  cat >"$dir/logback.xml" <<'EOF'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level [%thread] %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF

  local opts=(
    # A small initial heap: whatever is committed when Cassandra calls mlockall() gets faulted
    # in and pinned (see no_mlock below); with -Xms1G that alone is +1 GiB of RSS.
    -Xms256M -Xmx"${CASSANDRA_HEAP:-1G}"
    # From conf/jvm-server.options: assertions on (not in the off-heap queue library),
    # small thread stacks, IPv4, no hsperfdata mmap pauses.
    -ea -da:net.openhft...
    -Xss256k
    -XX:+UseThreadPriorities
    -XX:+PerfDisableSharedMem
    -Djava.net.preferIPv4Stack=true
    # Die on OOM rather than limp on (Cassandra warns at startup without one of these).
    -XX:+ExitOnOutOfMemoryError
    # C1 only: half the CPU to start (~6 s of CPU instead of ~11 s), which matters on 2 shared
    # cores; test loads are too short for C2 to pay off. Undo: CASSANDRA_JVM_OPTS=-XX:TieredStopAtLevel=4
    -XX:TieredStopAtLevel=1
    # From conf/jvm17-server.options: G1, and the JPMS exports/opens Cassandra needs on 17.
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
    -XX:G1HeapRegionSize=16m -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
    -XX:InitiatingHeapOccupancyPercent=70
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    # jamm measures object sizes (memtable accounting); upstream loads it as an agent too.
    -javaagent:"$(ls "$libs"/jamm-*.jar)"
    # Keep stdout/stderr open and stay in the foreground.
    -Dcassandra-foreground=yes
    -Dcassandra.config="file://$dir/cassandra.yaml"
    -Dcassandra.storagedir="$dir"
    -Dcassandra.logdir="$dir/logs"
    -Dlogback.configurationFile="file://$dir/logback.xml"
    # A lone seed: nothing to gossip with, so don't wait for gossip to settle.
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    # No peers to tell about a shutdown: don't sleep 2 s announcing it on SIGTERM.
    -Dcassandra.shutdown_announce_in_ms=0
    # Don't fsync the system keyspace (test data only; as Cassandra's own tests do).
    -Dcassandra.unsafesystem=true
    # Triggers are unused; an existing (empty) directory stops a warning on each CREATE TABLE.
    -Dcassandra.triggers_dir="$dir/triggers"
  )
  if [[ -n $jmx_port ]]; then
    # Local-only JMX (for nodetool) on a chosen port; without it JMX stays off, so 7199 is free.
    opts+=(-Dcassandra.jmx.local.port="$jmx_port")
  fi
  # HOOKSTREAM_RUN_ID marks the JVM so that `make test` can stop what it started.
  if [[ -n ${HOOKSTREAM_RUN_ID:-} ]]; then
    opts+=(-Dhookstream.run="$HOOKSTREAM_RUN_ID")
  fi
  # Extra JVM options last, so they win (word-split on purpose).
  # shellcheck disable=SC2206
  opts+=(${CASSANDRA_JVM_OPTS:-})
  # Cassandra always calls mlockall(MCL_CURRENT); as root (CI, this machine) it succeeds and
  # pins the whole JVM: ~250 MiB more RSS and ~2 s slower. Drop CAP_IPC_LOCK so the call fails
  # with ENOMEM (one WARN line); setpriv execs java, so the pid is still this script's.
  local no_mlock=()
  if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null && setpriv --bounding-set -ipc_lock true 2>/dev/null; then
    no_mlock=(setpriv --bounding-set -ipc_lock)
  fi
  exec "${no_mlock[@]}" java "${opts[@]}" -cp "$libs/*" org.apache.cassandra.service.CassandraDaemon
}

case ${1:-} in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  *) die "usage: cassandra.sh fetch | start --dir DIR --port CQLPORT [--storage-port P] [--jmx-port P]" ;;
esac
